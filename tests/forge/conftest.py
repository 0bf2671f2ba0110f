"""Fixtures shared by the forge tests: a GitLab MR client against the stand-in."""
from __future__ import annotations

import pytest

from mlci.forge.gitlab import GitLab
from tests.testing.forge import ForgeServer


@pytest.fixture
def gitlab(forge: ForgeServer) -> GitLab:
    """MR !7 of bank/credit-model, posted to by the user mlci-bot (a personal or project token)."""
    forge.add_user("glpat-bot", "mlci-bot")
    forge.add_merge_request("bank/credit-model", 7)
    return GitLab(forge.gitlab_api, "bank/credit-model", 7, "glpat-bot", "GITLAB_TOKEN", None)
