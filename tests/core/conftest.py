from __future__ import annotations

import pytest

from tests.testing.secrets import fresh_secrets  # noqa: F401 - used by _every_test_has_fresh_secrets


@pytest.fixture(autouse=True)
def _every_test_has_fresh_secrets(fresh_secrets: None) -> None:  # noqa: F811 - the fixture imported above
    """Every core test registers its own secrets."""
