"""A CI cancel (SIGTERM) in the middle of `mlci build`: exit 143 with one line, pip's process stopped, the
destination layout exactly as it was (no layer streamed so far left under a temp name) and mlci's temp dir
removed. The build is held in pip, whose index never answers, while the code layer is already written."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.image.support import build, model_repo, tree, wheel


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


class SilentIndex:
    """A TCP server on loopback that accepts and never answers; `connected` is set on the first accept."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connected = threading.Event()
        self.peers: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                peer, _ = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            self.connected.set()

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.sock.close()


@pytest.mark.parametrize("sig, code, line", [(signal.SIGTERM, 143, "mlci: terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "mlci: interrupted")])
def test_a_signal_during_pip_leaves_the_layout_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         sig: signal.Signals, code: int, line: str) -> None:
    out = tmp_path / "out"
    sha = wheel(tmp_path / "repo" / "wheelhouse")
    image: dict[str, object] = {"name": f"oci:{out}", "code": ["src"], "python": "3.11", "libc": "glibc 2.36"}
    files: dict[str, str | bytes] = {"src/model.bin": os.urandom(4 << 20),
                                     "requirements.txt": f"tinydep==1.0 --hash=sha256:{sha}\n"}
    repo = model_repo(tmp_path / "repo", image, files)
    assert build(repo, capsys, "--tag", "v1").code == 0  # a layout that already holds an image
    before = {name: (out / name).read_bytes() for name in sorted(tree(out)) if (out / name).is_file()}

    index = SilentIndex()
    held = {**image, "lock": "requirements.txt", "pip_args": ["--index-url", f"http://127.0.0.1:{index.port}/simple",
                                                             "--timeout", "600", "--retries", "0"]}
    repo = model_repo(tmp_path / "repo2", held, {**files, "src/serve.py": "print('changed')\n"})
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mlci", "build", "--tag", "v2"], cwd=repo, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(temp), "MLCI_CACHE_DIR": str(tmp_path / "cache")})
    try:
        assert index.connected.wait(120), "pip never asked the index"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        index.close()
    assert proc.returncode == code, stderr
    assert stderr.splitlines()[-1] == line and "Traceback" not in stderr, stderr
    assert "code layer" in stderr  # the code layer had been built before pip was stopped
    after = {name: (out / name).read_bytes() for name in sorted(tree(out)) if (out / name).is_file()}
    assert after == before  # no new blob, no temp name, index.json untouched
    assert list(temp.iterdir()) == []  # mlci's temp dir removed
    assert stdout == ""
