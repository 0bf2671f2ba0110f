"""The process-wide secret registry (mlci.core.log) restored after a test that registers its own secrets."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlci.core import log


@pytest.fixture
def fresh_secrets() -> Iterator[None]:
    """Each test registers its own secrets; the process-wide registry is restored afterwards."""
    saved_secrets, saved_forms = set(log._secrets), list(log._forms)
    yield
    log._secrets.clear()
    log._secrets.update(saved_secrets)
    log._forms[:] = saved_forms
