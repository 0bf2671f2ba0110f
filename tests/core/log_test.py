from __future__ import annotations

import json
import time

import pytest

from mlci.core import log


def test_registered_secrets_and_url_credentials_are_masked() -> None:
    log.register_env_secrets({"GITLAB_TOKEN": "glpat-abcdef123", "PATH": "/usr/bin", "DB_PASSWORD": "hunter22"})
    text = "token glpat-abcdef123 path /usr/bin pw hunter22 url https://bob:s3cr3t@host/x"
    assert log.redact(text) == "token [MASKED] path /usr/bin pw [MASKED] url https://[MASKED]@host/x"


@pytest.mark.parametrize("url, shown", [
    ("https://bob:s3cr3t@host/x", "https://[MASKED]@host/x"),  # user:password@
    ("https://glpat-0123456789abcdef@gitlab.bank/g/p.git", "https://[MASKED]@gitlab.bank/g/p.git"),  # token@
    ("https://gitlab-ci-token:glcbt-64_xyz@gitlab.bank/g/p.git", "https://[MASKED]@gitlab.bank/g/p.git"),
    ("https://ghp_abcdefghij:x-oauth-basic@github.com/o/r", "https://[MASKED]@github.com/o/r"),  # token as user
    ("postgresql://app:p@ss@db:5432/dwh", "postgresql://[MASKED]@db:5432/dwh"),  # a raw @ in the password
    ("git+https://u:p@h/r", "git+https://[MASKED]@h/r"),
    ("ssh://u:pw@host/r", "ssh://[MASKED]@host/r"),  # a password is a credential over SSH too
    ("ssh://git@gitlab.bank:2222/g/p.git", "ssh://git@gitlab.bank:2222/g/p.git"),  # a login name: kept
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),  # scp-like syntax cannot carry a password
    ("https://gitlab.bank/g/p.git", "https://gitlab.bank/g/p.git"),
    ("mail me at bob@bank.example", "mail me at bob@bank.example"),
])
def test_url_userinfo(url: str, shown: str) -> None:
    assert log.redact(f"remote {url} end") == f"remote {shown} end"


def test_url_masking_keeps_json_valid() -> None:
    text = json.dumps({"remote": "https://tok@host/x", "mail": "a@b", "other": "https://host", "u": "x://u:p@h"})
    assert json.loads(log.redact(text)) == {"remote": "https://[MASKED]@host/x", "mail": "a@b",
                                            "other": "https://host", "u": "x://[MASKED]@h"}


@pytest.mark.parametrize("name, secret", [
    ("GITLAB_TOKEN", True), ("CI_JOB_TOKEN", True), ("ACCESS_TOKEN", True), ("PGPASSWORD", True),
    ("DB_PASSWD", True), ("AWS_SECRET_ACCESS_KEY", True), ("APIKEY", True), ("OPENAI_API_KEY", True),
    ("GOOGLE_CREDENTIAL", True), ("HTTP_AUTH", True), ("WAREHOUSE_DSN", True), ("my_token", True),
    ("GIT_AUTHOR_NAME", False), ("GIT_AUTHOR_EMAIL", False), ("KEYBOARD_LAYOUT", False), ("XAUTHORITY", False),
    ("DSNAME", False), ("TOKENIZER_MODEL", False), ("PATH", False), ("HOME", False),
    ("MLCI_FORGE_TOKEN_ENV", False), ("REGISTRY_AUTH_FILE", False), ("SSH_AUTH_SOCK", False),
    ("OAUTH_TOKEN_URL", False), ("SECRETS_DIR", False), ("GOOGLE_APPLICATION_CREDENTIALS", False),
    ("DB_PASS", True), ("SMTP_PASS", True), ("KEYSTORE_PASS", True), ("GPG_PASSPHRASE", True),
    ("CI_JOB_JWT", True), ("CI_JOB_JWT_V2", True), ("GH_PAT", True), ("DB_PWD", True),
    ("PWD", False), ("OLDPWD", False), ("PGPASSFILE", False), ("PYTHON_COMPAT", False), ("GIT_ASKPASS", False),
])
def test_which_variable_names_look_secret(name: str, secret: bool) -> None:
    assert log.looks_secret(name) is secret


def test_name_based_secrets_need_eight_characters_and_mask_nothing_else() -> None:
    log.register_env_secrets({"SHORT_TOKEN": "abc1234", "GIT_AUTHOR_NAME": "Jane Doe the Author",
                              "API_KEY": "k-12345678"})
    assert log.redact("abc1234 Jane Doe the Author k-12345678") == "abc1234 Jane Doe the Author [MASKED]"
    assert log.registered_secrets() >= {"k-12345678"} and "abc1234" not in log.registered_secrets()


def test_short_explicit_values_are_not_treated_as_secrets() -> None:
    log.add_secret("ab")
    assert log.redact("abc ab") == "abc ab"


def test_url_encoded_and_json_escaped_forms_are_masked() -> None:
    secret = 'p@ss/w rd"\\é+'
    log.add_secret(secret)
    from urllib.parse import quote, quote_plus
    texts = [secret, quote(secret, safe=""), quote(secret, safe="").lower(), quote_plus(secret),
             json.dumps(secret), json.dumps(secret, ensure_ascii=False)]
    for text in texts:
        assert "[MASKED]" in log.redact(f"<{text}>"), text
        assert log.redact(f"<{text}>").strip("<>\"") == "[MASKED]", text


def test_base64_and_repr_forms_are_masked_wherever_the_value_starts() -> None:
    import base64

    token = "glpat-Abc123xyz789DEFghi0"
    log.add_secret(token)
    for prefix in ("", "oauth2:", "u:", "gitlab-ci-token:"):  # each offset of the token in the encoded bytes
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode((prefix + token).encode()).decode()
            shown = log.redact(f"Authorization: Basic {encoded}")
            assert "[MASKED]" in shown, prefix
            decodable = shown.split("Basic ")[1].split("[MASKED]")
            assert all(len(part) <= 4 for part in decodable[1:]), shown  # at most one group after the mask
    quoted = "pa'ss\"word"
    log.add_secret(quoted)
    assert log.redact(repr({"dsn": quoted})) == "{'dsn': '[MASKED]'}"


def test_passwords_in_the_urls_of_any_variable_are_secrets() -> None:
    log.register_env_secrets({"DATABASE_URL": "postgresql://app:Wh1te-Rabbit@db:5432/dwh",
                              "CI_REPOSITORY_URL": "https://gitlab-ci-token:glcbt-64_abcdefgh@gitlab.bank/g/p.git",
                              "https_proxy": "http://proxy-user:Pr0xy%40pass@proxy.bank:3128",
                              "PIP_INDEX_URL": "https://__token__@pypi.bank/simple", "HOME": "/root"})
    text = "auth Wh1te-Rabbit glcbt-64_abcdefgh Pr0xy@pass failed for __token__ and proxy-user in /root"
    assert log.redact(text) == "auth [MASKED] [MASKED] [MASKED] failed for __token__ and proxy-user in /root"


@pytest.mark.parametrize("line", [
    "a" * 1_000_000,  # one scheme-like run
    "https://" + "a" * 1_000_000,  # a URL whose authority never ends
    "https://" + "a:" * 500_000,
    "https://" + "a@" * 500_000,
    "x://" * 250_000,  # a million scheme starts
    "x://u:p@" * 125_000,
    "a:" * 500_000,
    "ab+.-" * 200_000,
])
def test_redaction_is_linear_a_1_mb_line_without_spaces_takes_under_a_second(line: str) -> None:
    for i in range(20):
        log.add_secret(f"registered-secret-{i:02d}")
    started = time.process_time()  # CPU time: what the work costs, not how busy the machine is
    log.redact(line)
    assert time.process_time() - started < 1.0


def test_json_output_masks_values_never_keys_by_name_and_stays_valid() -> None:
    log.add_secret("hunter2-pw")
    log.add_secret("20240101")  # a numeric secret: masking its text would break the JSON number
    data = {"password": "not a secret", "dsn": "postgresql://u:hunter2-pw@db/x", "hunter2-pw": 1,
            "count": 20240101, "ratio": float("nan"), "ok": True, "items": [("hunter2-pw", 3)]}
    text = log.dumps_json(data)
    assert json.loads(text) == {"password": "not a secret", "dsn": "postgresql://[MASKED]@db/x", "[MASKED]": 1,
                                "count": "[MASKED]", "ratio": None, "ok": True, "items": [["[MASKED]", 3]]}
    assert "hunter2-pw" not in text and "20240101" not in text


def test_out_and_out_json_print_masked(capsys: pytest.CaptureFixture[str]) -> None:
    log.add_secret("tok-abcdefgh")
    log.out("value tok-abcdefgh")
    log.out_json({"k": "tok-abcdefgh"}, indent=None)
    assert capsys.readouterr().out == 'value [MASKED]\n{"k": "[MASKED]"}\n'


def test_log_lines_are_masked_and_never_fail_on_unencodable_text(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(0)
    log.add_secret("tok-abcdefgh")
    log.logger.info("using tok-abcdefgh on %s", "caf\udce9.md")  # a non-UTF-8 file name, as argv gives it
    assert capsys.readouterr().err == "using [MASKED] on caf\\udce9.md\n"


def test_libraries_logging_in_process_and_python_warnings_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    import logging
    import warnings

    import dvc.repo  # noqa: F401  # DVC's import puts console handlers of its own on its logger

    log.setup(0)
    log.add_secret("tok-abcdefgh")
    logging.getLogger("dvc").info("an info line of DVC's")  # below the root handler's level: not shown
    logging.getLogger("dvc").warning("remote https://u:pw@host failed with tok-abcdefgh")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful with tok-abcdefgh", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "dvc: WARNING: remote https://[MASKED]@host failed with [MASKED]" in err
    assert "UserWarning: careful with [MASKED]" in err and "tok-abcdefgh" not in err
    assert err.count("failed with") == 1  # once, through the redactor: not also through DVC's own handler
    assert capsys.readouterr().out == "" and "info line" not in err  # nothing of DVC's on stdout
