"""Private temporary directories that are gone however the block ends: an error, Ctrl-C, or SIGTERM
arriving while they are made or while they are being removed (the removal finishes first, then the signal
is delivered: core/signals.deferred)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlci.core import signals


@contextmanager
def scratch_dir(prefix: str, parent: Path | str | None = None) -> Iterator[Path]:
    """A new private directory (mode 0700) named PREFIX* in `parent` (default: TMPDIR), removed on leaving."""
    made: Path | None = None
    try:
        with signals.deferred():  # made and named before a signal can leave it nameless
            made = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        yield made
    finally:
        if made is not None:
            with signals.deferred():
                shutil.rmtree(made, ignore_errors=True)
