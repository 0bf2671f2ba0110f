"""The example repo's model server, run for real on 127.0.0.1 against the trained model."""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testing import serving
from tests.testing.procs import free_port


@pytest.fixture
def server(trained_example: Path) -> Iterator[str]:
    port = free_port()
    child = serving.start([sys.executable, "src/serve.py"], trained_example, {"HOST": "127.0.0.1", "PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    try:
        serving.wait_healthy(url)
        yield url
    finally:
        serving.stop(child)


def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_predict_and_metrics(server: str) -> None:
    assert json.loads(urllib.request.urlopen(server + "/health").read()) == {"status": "ok"}
    risky = {**serving.APPLICANT, "num_delinquencies": 6, "credit_history": "poor", "employment_type": "unemployed"}
    status, body = _post(server + "/predict", json.dumps({"instances": [serving.APPLICANT, risky]}).encode())
    assert status == 200
    low, high = body["predictions"]  # type: ignore[misc]
    assert 0.0 <= low < high <= 1.0
    metrics = urllib.request.urlopen(server + "/metrics").read().decode()
    assert "# TYPE" in metrics and "predict" in metrics


def test_bad_input_is_a_400_with_a_json_error(server: str) -> None:
    status, body = _post(server + "/predict", b'{"instances": [{"age": "old"}]}')
    assert status == 400 and "error" in body
