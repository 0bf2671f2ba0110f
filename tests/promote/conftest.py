"""Fixtures of the promotion tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.testing.registry import Registry, start_registry, stop_registry
from tests.testing.secrets import fresh_secrets  # noqa: F401 - a fixture for the promotion tests


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    """A "dev" and a "stage" registry shared by the promotion tests of a session (each test uses its own
    repositories in them)."""
    root = tmp_path_factory.mktemp("promote-registries")
    dev, stage = start_registry(directory=root / "dev"), start_registry(directory=root / "stage")
    yield dev, stage
    stop_registry(dev)
    stop_registry(stage)
