"""Fixtures of the report tests."""
from __future__ import annotations

import pytest

from tests.report.get_started import GetStarted, build


@pytest.fixture(scope="session")
def get_started(tmp_path_factory: pytest.TempPathFactory) -> GetStarted:
    """The example-get-started-like project, trained at two commits and pushed (built once per session)."""
    return build(tmp_path_factory.mktemp("get-started"))
