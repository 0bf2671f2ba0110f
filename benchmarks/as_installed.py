"""mlci's bytecode as a user's install has it. `pip install` of the wheel compiles every module to
`__pycache__` (pip's default); the dev venv's editable install does not, and a shell that sets
PYTHONDONTWRITEBYTECODE=1 (this sandbox does) never caches it, so each measured process would compile mlci's
modules again (about 0.1 s of a CLI start, measured on `mlci promote`). Every benchmark calls `prepare()`
first: mlci's modules compiled once, the variable dropped for the processes it measures."""
from __future__ import annotations

import compileall
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlci"


def prepare() -> str:
    """Compile mlci as pip does at install and drop PYTHONDONTWRITEBYTECODE; a line saying so, for the output."""
    dropped = os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None
    if not compileall.compile_dir(str(PACKAGE), quiet=1):
        raise SystemExit(f"compiling {PACKAGE} failed")
    return ("bytecode: mlci compiled as pip installs it" + ("; PYTHONDONTWRITEBYTECODE dropped" if dropped else ""))
