"""The example repo's model server, run for real on 127.0.0.1 against the trained model."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

APPLICANT = {"age": 41, "income": 52000.0, "loan_amount": 15000.0, "term_months": 36, "num_delinquencies": 0,
             "region": "north", "employment_type": "salaried", "credit_history": "good"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(trained_example: Path) -> Iterator[str]:
    port = _free_port()
    child = subprocess.Popen([sys.executable, "src/serve.py"], cwd=trained_example,
                             env={"HOST": "127.0.0.1", "PORT": str(port), "PATH": "/usr/bin:/bin"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_predict_and_metrics(server: str) -> None:
    assert json.loads(urllib.request.urlopen(server + "/health").read()) == {"status": "ok"}
    risky = {**APPLICANT, "num_delinquencies": 6, "credit_history": "poor", "employment_type": "unemployed"}
    status, body = _post(server + "/predict", json.dumps({"instances": [APPLICANT, risky]}).encode())
    assert status == 200
    low, high = body["predictions"]  # type: ignore[misc]
    assert 0.0 <= low < high <= 1.0
    metrics = urllib.request.urlopen(server + "/metrics").read().decode()
    assert "# TYPE" in metrics and "predict" in metrics


def test_bad_input_is_a_400_with_a_json_error(server: str) -> None:
    status, body = _post(server + "/predict", b'{"instances": [{"age": "old"}]}')
    assert status == 400 and "error" in body
