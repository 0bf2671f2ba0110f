"""Minimal HTTP model server (standard library only, plus the model's deps).

Endpoints:
  GET  /health   -> 200 {"status": "ok"}
  POST /predict  -> {"predictions": [probability_of_default, ...]}
                    body: {"instances": [{"age": 35, "income": 52000.0, ...}, ...]}
                    400 {"error": "..."} on malformed input
  GET  /metrics  -> Prometheus text exposition format

Environment: HOST (default 0.0.0.0), PORT (default 8080),
MODEL_PATH (default model/model.pkl), MAX_INSTANCES (default 1000).

Features are built by features.transform, the same code the model was
trained with. Run it as ``python src/serve.py`` from the repository root.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from features import RAW_FEATURES, FeatureError, transform

MAX_BODY_BYTES = 1 << 20
KNOWN_PATHS = ("/health", "/predict", "/metrics")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters rendered in the Prometheus text format (0.0.4)."""

    def __init__(self, model_md5: str) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, list] = {}  # path -> [bucket counts..., sum, count]
        self._predictions = 0
        self._model_md5 = model_md5

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        path = path if path in KNOWN_PATHS else "other"
        with self._lock:
            key = (method, path, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.setdefault(path, [0] * len(BUCKETS) + [0.0, 0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def add_predictions(self, n: int) -> None:
        with self._lock:
            self._predictions += n

    def render(self) -> str:
        with self._lock:
            out = [
                "# HELP http_requests_total HTTP requests handled, by method, path and status.",
                "# TYPE http_requests_total counter",
            ]
            for (method, path, status), n in sorted(self._requests.items()):
                out.append(f'http_requests_total{{method="{method}",path="{path}",status="{status}"}} {n}')
            out += [
                "# HELP http_request_duration_seconds Time spent handling HTTP requests, by path.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for path, hist in sorted(self._latency.items()):
                for bound, n in zip(BUCKETS, hist):
                    out.append(f'http_request_duration_seconds_bucket{{path="{path}",le="{bound}"}} {n}')
                out.append(f'http_request_duration_seconds_bucket{{path="{path}",le="+Inf"}} {hist[-1]}')
                out.append(f'http_request_duration_seconds_sum{{path="{path}"}} {hist[-2]:.6f}')
                out.append(f'http_request_duration_seconds_count{{path="{path}"}} {hist[-1]}')
            out += [
                "# HELP model_predictions_total Instances scored by /predict.",
                "# TYPE model_predictions_total counter",
                f"model_predictions_total {self._predictions}",
                "# HELP model_info Model served by this process.",
                "# TYPE model_info gauge",
                f'model_info{{model_md5="{self._model_md5}"}} 1',
            ]
        return "\n".join(out) + "\n"


class BadRequest(Exception):
    pass


def parse_instances(body: bytes, max_instances: int) -> list:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list of objects')
    if len(instances) > max_instances:
        raise BadRequest(f'too many instances: {len(instances)} > {max_instances}')
    return instances


def make_handler(model, metrics: Metrics, max_instances: int):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mlci-example-model/1.0"

        def _send(self, status: int, body: bytes, content_type: str, headers=()) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self._status = status

        def _json(self, status: int, obj, headers=()) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json", headers)

        def _timed(self, method: str, handler) -> None:
            start = time.perf_counter()
            self._status = 500
            path = self.path.split("?", 1)[0]
            try:
                handler(path)
            except Exception as exc:  # never leave a client without an answer
                self.log_error("internal error: %r", exc)
                self._json(500, {"error": "internal server error"})
            finally:
                metrics.observe(method, path, self._status, time.perf_counter() - start)

        def do_GET(self) -> None:
            self._timed("GET", self._get)

        def do_POST(self) -> None:
            self._timed("POST", self._post)

        def _get(self, path: str) -> None:
            if path == "/health":
                self._json(200, {"status": "ok"})
            elif path == "/metrics":
                self._send(200, metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/predict":
                self._json(405, {"error": "use POST"}, [("Allow", "POST")])
            else:
                self._json(404, {"error": f"not found: {path}"})

        def _post(self, path: str) -> None:
            if path != "/predict":
                if path in KNOWN_PATHS:
                    self._json(405, {"error": "use GET"}, [("Allow", "GET")])
                else:
                    self._json(404, {"error": f"not found: {path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "Content-Length header required"})
                return
            if length < 0 or length > MAX_BODY_BYTES:
                self._json(413, {"error": f"body must be at most {MAX_BODY_BYTES} bytes"})
                return
            body = self.rfile.read(length)
            try:
                X = transform(parse_instances(body, max_instances))
            except (BadRequest, FeatureError) as exc:
                self._json(400, {"error": str(exc), "features": list(RAW_FEATURES)})
                return
            proba = model.predict_proba(X)[:, 1]
            metrics.add_predictions(len(proba))
            self._json(200, {"predictions": [float(p) for p in proba]})

    return Handler


def main() -> int:
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "8080"))
    model_path = os.environ.get("MODEL_PATH", os.path.join("model", "model.pkl"))
    max_instances = int(os.environ.get("MAX_INSTANCES", "1000"))

    with open(model_path, "rb") as fh:
        blob = fh.read()
    model = pickle.loads(blob)
    model_md5 = hashlib.md5(blob).hexdigest()
    metrics = Metrics(model_md5)

    server = ThreadingHTTPServer((host, port), make_handler(model, metrics, max_instances))
    server.daemon_threads = True

    def stop(signum, _frame):
        # shutdown() waits for serve_forever() to return, so call it off-thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound_host, bound_port = server.server_address[:2]
    print(f"serving {model_path} (md5 {model_md5}) on http://{bound_host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
