"""mlci as a user installs it: the wheel built from a clean copy of this checkout (`pip wheel --no-deps`),
installed with its dependencies (pinned by ci/constraints.txt) and the example model's hash-pinned lock into
a fresh venv outside the checkout. That is what a CI job image holds. Made once per test run; xdist workers
share it through a file lock. Loaded as a plugin by tests/conftest.py: its hooks mark every test that uses
the fixture `wheel`, keep tests/package/ on one xdist worker, and print how long the install took."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.testing.images import wheelhouse
from tests.testing.repos import ROOT

# Read at import, before the session's hermetic HOME replaces it: pip's own cache, so that a test run
# reuses what installing the dev venv downloaded.
_PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")
_DEV_BIN = Path(sys.executable).parent


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_CACHE_DIR": _PIP_CACHE, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _step(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, env=_pip_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")


def _clean_copy(dest: Path) -> Path:
    """The files a clone of this checkout would have (tracked, plus new files not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet staged is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _install(root: Path) -> dict[str, float]:
    """Build the wheel, make the venv, install; returns the seconds each step took."""
    seconds: dict[str, float] = {}
    start = time.monotonic()
    source = _clean_copy(root / "src")
    _step([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(source)], root)
    seconds["wheel"] = time.monotonic() - start
    start = time.monotonic()
    _step([sys.executable, "-m", "venv", str(root / "venv")], root)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    (wheel,) = (root / "dist").glob("mlci-*.whl")
    _step([*pip, "-c", str(ROOT / "ci" / "constraints.txt"), str(wheel)], root)
    seconds["install"] = time.monotonic() - start
    start = time.monotonic()
    _step([*pip, "--no-deps", "--require-hashes", "--no-index", "--find-links", str(wheelhouse()),
           "-r", str(ROOT / "example-model-repo" / "requirements.lock")], root)
    _step([str(root / "venv" / "bin" / "python"), "-m", "pip", "check"], root)  # the lock and mlci's deps agree
    seconds["model_lock"] = time.monotonic() - start
    return seconds


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per test run: the run's basetemp, whose parent xdist workers share."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "installed-mlci"


@pytest.fixture(scope="session")
def installed_mlci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with the built mlci wheel installed as a user would (plus the example's
    runtime lock, so its stages train there). Run it with `env(bin_dir)`: a PATH without the dev venv."""
    root = _shared_root(tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    with (root.parent / "installed-mlci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (root / "failed").is_file():
                pytest.fail((root / "failed").read_text(), pytrace=False)
            if not (root / "timings.json").is_file():
                try:
                    seconds = _install(root)
                except RuntimeError as exc:
                    (root / "failed").write_text(f"installing the built mlci wheel failed: {exc}")
                    pytest.fail(str(exc), pytrace=False)
                (root / "timings.json").write_text(json.dumps(seconds))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root / "venv" / "bin"


def env(bin_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ as a CI job with the installed mlci sees it: its venv first on PATH, the dev venv gone."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p).resolve() != _DEV_BIN.resolve()]
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**base, "PATH": os.pathsep.join([str(bin_dir), *path]), "VIRTUAL_ENV": str(bin_dir.parent),
            **(extra or {})}


def run(bin_dir: Path, cwd: Path, *args: str, env_extra: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run the installed `mlci ARGS` in `cwd`, capturing output."""
    return subprocess.run([str(bin_dir / "mlci"), *args], cwd=cwd, capture_output=True, text=True,
                          env=env(bin_dir, env_extra), check=False)


def wheel(bin_dir: Path) -> Path:
    """The wheel that the venv of `bin_dir` was installed from."""
    (built,) = (bin_dir.parents[1] / "dist").glob("mlci-*.whl")
    return built


def timings(bin_dir: Path) -> dict[str, float]:
    """Seconds spent making the install: wheel, install (venv + mlci and its dependencies), model_lock."""
    loaded: dict[str, float] = json.loads((bin_dir.parents[1] / "timings.json").read_text())
    return loaded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the installed package is a `wheel` test (deselect with -m "not wheel")."""
    for item in items:
        if "installed_mlci" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.wheel)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n` with the default `--dist load`, except that tests/package/ (the installed wheel's tests) goes to one
    worker as a unit, so the other never idles waiting for the install. (`--dist loadgroup` with xdist_group
    marks would say this, but it silently stops grouping on pytest 9.2: pytest-xdist issue #1386.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class _InstalledTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/package/" if nodeid.startswith("tests/package/") else nodeid

    return _InstalledTogether(config, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long making the installed package took (recorded by tests/package/wheel_test.py)."""
    for report in terminalreporter.stats.get("passed", []):
        spent = [(k.removeprefix("installed_mlci_").removesuffix("_seconds"), v)
                   for k, v in getattr(report, "user_properties", []) if k.startswith("installed_mlci_")]
        if spent:
            terminalreporter.write_line("installed mlci made in: " + ", ".join(f"{k} {v} s" for k, v in spent))
