from __future__ import annotations

from mlci.core import log


def test_registered_secrets_and_url_passwords_are_masked() -> None:
    log.register_env_secrets({"GITLAB_TOKEN": "glpat-abcdef123", "PATH": "/usr/bin", "DB_PASSWORD": "hunter22"})
    text = "token glpat-abcdef123 path /usr/bin pw hunter22 url https://bob:s3cr3t@host/x"
    assert log.redact(text) == "token [MASKED] path /usr/bin pw [MASKED] url https://bob:[MASKED]@host/x"


def test_short_values_are_not_treated_as_secrets() -> None:
    log.add_secret("ab")
    assert log.redact("abc ab") == "abc ab"
