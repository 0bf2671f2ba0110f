"""Run the example's model server (on the host or inside an image) and talk to it over 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

APPLICANT = {"age": 41, "income": 52000.0, "loan_amount": 15000.0, "term_months": 36, "num_delinquencies": 0,
             "region": "north", "employment_type": "salaried", "credit_history": "good"}


def start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (so `stop` also ends what it spawned)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group and wait for it."""
    os.killpg(child.pid, 15)
    child.wait(timeout=20)


def wait_healthy(url: str, attempts: int = 300) -> None:
    """Poll GET /health every 0.1 s until it answers."""
    for _ in range(attempts):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not start")


def predict(url: str) -> list[float]:
    """The server's predictions for two fixed applicants."""
    body = json.dumps({"instances": [APPLICANT, {**APPLICANT, "credit_history": "poor"}]}).encode()
    request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": "application/json"})
    return list(json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"])
