"""Secrets never reach an image: a token in the remote URL is in no blob (layers decompressed, config,
manifest, index), the source label comes from the CI's own variables or the URL with its userinfo
removed, and a registered secret in content bound for a layer stops the build, naming the file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlci.image.labels import without_credentials
from tests.image.support import build, layout_blobs, model_repo

TOKEN = "glpat-Xq3k9LmN2pR7sT5vW8yZ"


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name in ("CI_PROJECT_URL", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("remote", [
    f"https://{TOKEN}@gitlab.bank.internal/ml/credit.git",
    f"https://oauth2:{TOKEN}@gitlab.bank.internal/ml/credit.git",
    f"https://gitlab-ci-token:{TOKEN}@gitlab.bank.internal:8443/ml/credit.git?private_token={TOKEN}#{TOKEN}",
])
def test_a_token_in_the_remote_url_is_in_no_blob_of_the_image(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               remote: str) -> None:
    """The whole checkout goes in (code: ["."]), so .git/config with the URL would be there too."""
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["."]}, remote_url=remote)
    assert TOKEN in (repo / ".git" / "config").read_text()
    run = build(repo, capsys, "--tag", "v1", "--json", "--dotenv", str(tmp_path / "build.env"))
    assert run.code == 0, run.err
    blobs = layout_blobs(tmp_path / "out")
    assert len(blobs) == 2 + 3  # index.json, oci-layout, the code layer, the config, the manifest
    assert [name for name, data in blobs.items() if TOKEN.encode() in data] == []
    assert TOKEN not in run.out + run.err + (tmp_path / "build.env").read_text()
    port = ":8443" if ":8443" in remote else ""
    assert json.loads(run.out)["labels"]["org.opencontainers.image.source"] == \
        f"https://gitlab.bank.internal{port}/ml/credit.git"


@pytest.mark.parametrize("env, source", [
    ({"CI_PROJECT_URL": "https://gitlab.bank.internal/ml/credit"}, "https://gitlab.bank.internal/ml/credit"),
    ({"CI_PROJECT_URL": f"https://u:{TOKEN}@gitlab.bank.internal/ml/credit"}, "https://gitlab.bank.internal/ml/credit"),
    ({"GITHUB_SERVER_URL": "https://github.bank.internal/", "GITHUB_REPOSITORY": "ml/credit"},
     "https://github.bank.internal/ml/credit"),
])
def test_the_source_label_comes_from_the_ci_first(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                  source: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"]},
                      remote_url=f"https://{TOKEN}@elsewhere.invalid/x.git")
    run = build(repo, capsys, "--tag", "v1", "--json")
    assert run.code == 0, run.err
    labels = json.loads(run.out)["labels"]
    assert labels["org.opencontainers.image.source"] == source
    blobs = layout_blobs(tmp_path / "out")
    manifest = json.loads(blobs[json.loads(blobs["index.json"])["manifests"][0]["digest"]])
    assert manifest["annotations"]["org.opencontainers.image.source"] == source


@pytest.mark.parametrize("url, expected", [
    ("https://gitlab.bank/ml/x.git", "https://gitlab.bank/ml/x.git"),
    (f"https://{TOKEN}@gitlab.bank/ml/x.git", "https://gitlab.bank/ml/x.git"),
    (f"https://user:{TOKEN}@gitlab.bank:8443/ml/x.git", "https://gitlab.bank:8443/ml/x.git"),
    ("https://user:p%40ss@w@gitlab.bank/ml/x.git", "https://gitlab.bank/ml/x.git"),
    (f"ssh://git:{TOKEN}@[::1]:2222/ml/x.git", "ssh://[::1]:2222/ml/x.git"),
    ("git@gitlab.bank:ml/x.git", "ssh://gitlab.bank/ml/x.git"),
    (f"{TOKEN}@gitlab.bank:ml/x.git", "ssh://gitlab.bank/ml/x.git"),
    ("/srv/git/x.git", "/srv/git/x.git"),
    ("https://[broken/x", None),
    ("not a url", None),
])
def test_userinfo_is_removed_not_masked(url: str, expected: str | None) -> None:
    assert without_credentials(url) == expected


def test_a_registered_secret_in_a_file_stops_the_build_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)  # registered: its name looks secret
    weights = os.urandom((1 << 20) - 7) + TOKEN.encode() + os.urandom(1 << 20)  # across a 1 MiB read
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "code": ["src"],
                                          "artifacts": ["model"]},
                      {"src/serve.py": "print('serve')\n", "model/weights.bin": weights})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "model/weights.bin: holds the value of a secret ($DEPLOY_TOKEN)" in run.err, run.err
    assert TOKEN not in run.err and "never rewrites layer content" in run.err
    assert not (tmp_path / "out").exists()  # nothing of the image was written, no empty layout left either
    (repo / "model" / "weights.bin").write_bytes(b"clean")
    (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
        "name": f"oci:{tmp_path / 'out'}", "code": ["src"], "env": {"API_TOKEN": TOKEN}}}))
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "the image config (labels, env, entrypoint, cmd): holds the value" in run.err
    assert not (tmp_path / "out").exists()  # the layers, built, were never named: removed
    (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {"name": f"oci:{tmp_path / 'out'}",
                                                                       "code": ["src"]}}))
    assert build(repo, capsys, "--tag", "v1").code == 0
    index = (tmp_path / "out" / "index.json").read_bytes()
    (repo / "mlci.yaml").write_text(json.dumps({"version": 1, "image": {
        "name": f"oci:{tmp_path / 'out'}", "code": ["src"], "env": {"API_TOKEN": TOKEN}}}))
    assert build(repo, capsys, "--tag", "v2").code == 2
    assert (tmp_path / "out" / "index.json").read_bytes() == index  # a layout that was there stays as it was
