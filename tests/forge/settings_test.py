"""`forge.bot_login`: from mlci.yaml or MLCI_FORGE_BOT_LOGIN, and a value that is not a login is exit 2."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci import settings as cfg
from mlci.core.errors import ConfigError


def test_bot_login_from_the_file_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "mlci.yaml").write_text("version: 1\nforge:\n  bot_login: credit-ml[bot]\n")
    assert cfg.load(None, tmp_path, environ={}).config.forge.bot_login == "credit-ml[bot]"
    overridden = cfg.load(None, tmp_path, environ={"MLCI_FORGE_BOT_LOGIN": "project_41_bot_3f2a"})
    assert overridden.config.forge.bot_login == "project_41_bot_3f2a"


@pytest.mark.parametrize("value", ["ghs_a b", "@alice", "-x", "x[bot"])
def test_a_bot_login_that_is_not_a_login_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={"MLCI_FORGE_BOT_LOGIN": value})
    assert any("forge.bot_login: not a login" in problem for problem in caught.value.problems)
    assert all(value not in problem for problem in caught.value.problems)


@pytest.mark.parametrize("value", ["gitlab.bank/api/v4", "ftp://gitlab.bank/api/v4", "https://", "file:///etc/x"])
def test_an_api_url_that_is_no_http_url_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load(None, tmp_path, environ={"MLCI_FORGE_API_URL": value})
    assert caught.value.problems == ["MLCI_FORGE_API_URL: forge.api_url: must be an http(s):// URL (the API root, "
                                     "e.g. https://gitlab.bank/api/v4)"]
    assert cfg.load(None, tmp_path, environ={"MLCI_FORGE_API_URL": "HTTPS://gitlab.bank/api/v4"}).config.forge.api_url
