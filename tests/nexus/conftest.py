from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlci.oci.settings import RegistrySettings
from tests.testing.nexus import Nexus, start_nexus, stop_nexus

StartNexus = Callable[..., Nexus]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartNexus]:
    """Start Nexus stand-ins (nginx + REST API) for one test; `start(**options)` as start_nexus takes them."""
    started: list[Nexus] = []

    def make(**options: Any) -> Nexus:
        nexus = start_nexus(tmp_path / f"nexus-{len(started)}", **options)
        started.append(nexus)
        return nexus

    yield make
    for nexus in started:
        stop_nexus(nexus)


def settings_for(nexus: Nexus, **entry: Any) -> dict[str, RegistrySettings]:
    """The `registries` section for the stand-in's host: plain HTTP unless it serves TLS."""
    if nexus.nginx.ca_bundle is None:
        entry.setdefault("plain_http", True)
    return {nexus.host: RegistrySettings(**entry)}


def no_sleep(_seconds: float) -> None:
    """Waits skipped (the tests' servers answer at once)."""
