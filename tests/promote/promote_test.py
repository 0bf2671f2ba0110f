"""`mlci promote` between two real registries: the policy refuses before anything is copied (the source's ref and
commit, a passing scan record under today's scan policy, an immutable tag), a promotion copies the image by
digest with its scan record, tags last, aliases, and a re-run re-uses everything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from mlci.oci.copy import RegistryEndpoint, open_endpoint
from mlci.oci.reference import parse
from mlci.scan import record
from tests.image.support import model_repo
from tests.sign.support import p256
from tests.testing import repos
from tests.testing.gitremote import bare_repo, read_file
from tests.testing.nexus import start_nexus, stop_nexus
from tests.testing.registry import Registry, access_log, plain_http
from tests.testing.trivydb import TrivyDb, make_db


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory: pytest.TempPathFactory) -> TrivyDb:
    return make_db(tmp_path_factory.mktemp("promote-db"), advisories=())


def _repo(path: Path, dev: Registry, stage: Registry, db: TrivyDb, name: str, **env: Any) -> Path:
    repo = model_repo(path, {"name": f"docker://{dev.host}/ml/{name}", "code": ["src"]})
    config = json.loads((repo / "mlci.yaml").read_text())
    config["scan"] = {"cache_dir": str(db.cache_dir)}
    config["promote"] = {"environments": {
        "stage": {"image": f"docker://{stage.host}/ml/{name}", "branches": ["main"], "sign": False, **env},
        "prod": {"image": f"docker://{stage.host}/prod/{name}", "tags": r"v\d+\.\d+\.\d+", "sign": False}},
        "allow_force": True}
    (repo / "mlci.yaml").write_text(json.dumps(config))
    repos.commit_all(repo, "promotion environments")
    return repo


def _env(dev: Registry, stage: Registry, **extra: str) -> dict[str, str]:
    return {**plain_http(dev.host, stage.host), "CI_COMMIT_BRANCH": "main", "SOURCE_DATE_EPOCH": "1700000000",
            **extra}


def _mlci(repo: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = repos.run_mlci(repo, *args, env=env)
    return done.returncode, done.stdout, done.stderr


def _built(repo: Path, env: dict[str, str], tag: str) -> str:
    code, out, err = _mlci(repo, env, "build", "--tag", tag)
    assert code == 0, err
    return out.strip()  # docker://dev/ml/NAME:TAG@sha256:...


def test_a_scanned_image_is_promoted_by_digest_with_its_record_and_a_rerun_copies_nothing(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "happy")
    bare = bare_repo(tmp_path / "environments.git")
    config = json.loads((repo / "mlci.yaml").read_text())
    config["promote"]["gitops"] = {"repository": str(bare)}
    config["promote"]["audit_log"] = str(tmp_path / "audit.jsonl")
    (repo / "mlci.yaml").write_text(json.dumps(config))
    repos.commit_all(repo, "the GitOps repository")
    origin = bare_repo(tmp_path / "model.git")
    repos.git(repo, "remote", "set-url", "origin", str(origin))
    env = _env(dev, stage, GITLAB_USER_LOGIN="release-manager")
    image = _built(repo, env, "1.0")
    code, _, err = _mlci(repo, env, "scan", image.rsplit("@", 1)[0])
    assert code == 0, err
    digest = image.rsplit("@", 1)[1]
    code, out, err = _mlci(repo, env, "promote", image.rsplit("@", 1)[0], "--env", "stage", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["image"] == f"docker://{stage.host}/ml/happy:1.0@{digest}" and result["tagged"] == ["1.0"]
    assert result["copied"] and result["referrers"] and result["scan_record"]
    # each blob once, in one list: the scan record's empty config was in both (copied once, then found)
    assert len(set(result["copied"])) == len(result["copied"]) and not set(result["copied"]) & set(result["reused"])
    destination, _ = open_endpoint(parse(f"docker://{stage.host}/ml/happy"), plain_http=(stage.host,))
    assert destination.get_manifest("1.0").digest == digest
    assert isinstance(destination, RegistryEndpoint)
    assert [r.verdict for r in record.find(destination, digest)] == ["pass"]  # the evidence travelled
    assert not any(t.startswith("mlci-key-") for t in destination.registry.tags("ml/happy"))
    state = read_file(bare)  # the GitOps record, pushed
    assert state["image"]["digest"] == digest and state["promotion"]["by"] == "release-manager"
    assert state["scan"]["verdict"] == "pass"
    # GTO's stage tag, pushed to the model repository (the model is named after the repository's directory)
    assert "refs/tags/repo#stage#1" in repos.git(origin, "show-ref", "--tags")
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 1 and digest in lines[0]
    mark, src_mark = len(access_log(stage)), len(access_log(dev))
    code, out, err = _mlci(repo, env, "promote", image.rsplit("@", 1)[0], "--env", "stage", "--json")
    again = json.loads(out)
    assert code == 0 and again["copied"] == [] and again["reused"] and again["tagged"] == ["1.0"], err
    writes = [e for e in access_log(stage)[mark:] if e.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes == []  # the image is there under its tag: not even the write check's upload session
    assert not [e for e in access_log(stage)[mark:] if e.method == "PUT" and e.target.endswith("/manifests/1.0")]
    # the tag, read and hashed once, proves the image there: no HEAD, read-back or second look at the tag
    image_reads = [(e.method, e.target.rsplit("/", 1)[1]) for e in access_log(stage)[mark:]
                   if e.target.split("?")[0].endswith((f"/manifests/{digest}", "/manifests/1.0"))]
    assert image_reads == [("GET", "1.0")]
    # at the source: the referrers listed once for the scan record and the copy; the revision read from the
    # manifest's annotation (no config blob); no GET of a signature tag the tag list does not hold
    source, _ = open_endpoint(parse(f"docker://{dev.host}/ml/happy"), plain_http=(dev.host,))
    config_blob = source.get_manifest(digest).body()["config"]["digest"]
    source_reads = [e.target.split("?")[0].removeprefix("/v2/ml/happy/") for e in access_log(dev)[src_mark:]]
    assert f"blobs/{config_blob}" not in source_reads
    assert source_reads.count("tags/list") == 1 and sum(r.startswith("referrers/") for r in source_reads) == 1
    assert not [r for r in source_reads if r.endswith(".sig")]


def test_without_a_passing_scan_record_nothing_is_copied(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "unscanned")
    env = _env(dev, stage)
    image = _built(repo, env, "1.0")
    mark = len(access_log(stage))
    code, _, err = _mlci(repo, env, "promote", image.rsplit("@", 1)[0], "--env", "stage")
    assert code == 1, err
    assert "requires a passing scan record of sha256:" in err and "found: no scan record at all" in err
    assert not [e for e in access_log(stage)[mark:] if e.method in ("POST", "PUT", "PATCH")]


def test_the_environment_rule_the_commit_and_tag_immutability_refuse_before_copying(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "rules")
    env = _env(dev, stage)
    first = _built(repo, env, "1.0").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", first)[0] == 0
    code, _, err = _mlci(repo, env, "promote", first, "--env", "prod")
    assert code == 1 and "promote.environments.prod accepts tags matching" in err and "branch 'main'" in err, err
    mark = len(access_log(stage))  # a destination naming a digest: the digest was ignored, the image promoted
    code, _, err = _mlci(repo, env, "promote", first, f"docker://{stage.host}/ml/rules@sha256:{'ab' * 32}",
                         "--env", "stage")
    assert code == 2 and "a destination is a repository (and a tag), not a digest" in err, err
    assert not [e for e in access_log(stage)[mark:] if "/ml/rules/" in e.target]
    assert _mlci(repo, env, "promote", first, "--env", "stage")[0] == 0
    (repo / "src" / "serve.py").write_text("print('serve, faster')\n")
    repos.commit_all(repo, "a code change")
    code, _, err = _mlci(repo, env, "promote", first, "--env", "stage")
    assert code == 1 and "was built from commit" in err, err  # HEAD moved on: not this pipeline's build
    second = _built(repo, env, "1.0").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", second)[0] == 0
    code, _, err = _mlci(repo, env, "promote", second, "--env", "stage")
    assert code == 1 and "tag '1.0' already names sha256:" in err, err
    code, out, err = _mlci(repo, env, "promote", second, "--env", "stage", "--force", "--json")
    assert code == 0 and json.loads(out)["forced"] and json.loads(out)["previous"], err


def test_a_release_tag_gets_its_alias_tags(tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "aliases", aliases=True)
    env = _env(dev, stage)
    image = _built(repo, env, "v1.2.3").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", image)[0] == 0
    code, out, err = _mlci(repo, env, "promote", image, "--env", "stage", "--json")
    assert code == 0 and json.loads(out)["tagged"] == ["v1.2.3", "v1.2", "v1"], err
    digests = {}
    for release in ("v1.2.5", "v1.2.4"):  # a hotfix of an older release after a newer one
        (repo / "src" / "serve.py").write_text(f"print('serve {release}')\n")
        repos.commit_all(repo, release)
        image = _built(repo, env, release).rsplit("@", 1)[0]
        assert _mlci(repo, env, "scan", image)[0] == 0
        code, out, err = _mlci(repo, env, "promote", image, "--env", "stage", "--json")
        assert code == 0, err
        digests[release] = json.loads(out)["digest"]
        if release == "v1.2.5":
            assert json.loads(out)["tagged"] == ["v1.2.5", "v1.2", "v1"]
    assert json.loads(out)["tagged"] == ["v1.2.4"] and "alias tag v1.2 stays on the newer release v1.2.5" in err
    stage_repo, _ = open_endpoint(parse(f"docker://{stage.host}/ml/aliases"), plain_http=(stage.host,))
    assert stage_repo.get_manifest("v1.2").digest == stage_repo.get_manifest("v1").digest == digests["v1.2.5"]


def test_a_promotion_signs_the_digest_and_the_next_hop_carries_the_signature_and_record(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    keys = p256(tmp_path / "keys")
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "signed", sign=True)
    config = json.loads((repo / "mlci.yaml").read_text())
    config["promote"]["signing"] = {"key_file": str(keys.private)}
    config["promote"]["environments"]["prod"]["sign"] = True
    (repo / "mlci.yaml").write_text(json.dumps(config))
    repos.commit_all(repo, "sign promotions")
    env = _env(dev, stage)
    image = _built(repo, env, "v2.0.0").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", image)[0] == 0
    code, out, err = _mlci(repo, env, "promote", image, "--env", "stage", "--json")
    assert code == 0 and json.loads(out)["signed"], err
    staged = f"docker://{stage.host}/ml/signed:v2.0.0"
    code, out, err = _mlci(repo, env, "verify", staged, "--key", str(keys.public))
    assert code == 0, err
    assert _mlci(repo, env, "verify", image, "--key", str(keys.public))[0] == 1  # dev's copy was never signed
    tagged = _env(dev, stage, CI_COMMIT_TAG="v2.0.0")
    del tagged["CI_COMMIT_BRANCH"]
    code, out, err = _mlci(repo, tagged, "promote", staged, "--env", "prod", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["signature"] and result["referrers"] and result["scan_record"]  # carried from stage
    assert _mlci(repo, env, "verify", f"docker://{stage.host}/prod/signed:v2.0.0", "--key", str(keys.public))[0] == 0
    assert keys.private.read_text().splitlines()[1] not in out + err


def test_the_model_files_and_the_scan_record_go_to_a_nexus_raw_repository_checked(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    dev, stage = pair
    nexus = start_nexus(tmp_path / "nexus")  # nginx with "disable redeploy" and the REST stand-in
    try:
        repo = model_repo(tmp_path / "repo", {"name": f"docker://{dev.host}/ml/raw", "code": ["src"],
                                              "artifacts": ["model/weights.bin"]},
                          {"model/weights.bin": b"\x00weights" * 1000})
        config = json.loads((repo / "mlci.yaml").read_text())
        config["scan"] = {"cache_dir": str(clean_db.cache_dir)}
        config["promote"] = {"environments": {"stage": {"image": f"docker://{stage.host}/ml/raw", "branches": ["main"],
                                                        "sign": False, "nexus_raw": nexus.repository_url}}}
        (repo / "mlci.yaml").write_text(json.dumps(config))
        repos.commit_all(repo, "nexus")
        env = {**_env(dev, stage), **plain_http(dev.host, stage.host, nexus.host)}
        image = _built(repo, env, "1.0").rsplit("@", 1)[0]
        assert _mlci(repo, env, "scan", image)[0] == 0
        code, out, err = _mlci(repo, env, "promote", image, "--env", "stage", "--json")
        assert code == 0, err
        uploaded = {a["path"]: a for a in json.loads(out)["artifacts"]}
        assert set(uploaded) == {"repo/1.0/model/model/weights.bin", "repo/1.0/scan-record.json", "repo/1.0/SHA256SUMS"}
        assert all(a["verified"] in ("assets API", "read-back") for a in uploaded.values())
        assert nexus.stored("repo/1.0/model/model/weights.bin").read_bytes() == b"\x00weights" * 1000
        again = _mlci(repo, env, "promote", image, "--env", "stage", "--json")  # "disable redeploy": same bytes
        assert again[0] == 0 and {a["state"] for a in json.loads(again[1])["artifacts"]} == {"already there"}, again[2]
    finally:
        stop_nexus(nexus)


def test_the_automatic_promotion_skips_an_unconfigured_environment_or_a_missing_image_and_by_hand_refuses(
        tmp_path: Path) -> None:
    """The pipeline's automatic stage promotion (`--if-configured`) passes in a repo that configures no
    environment or no image; the same command without the flag (a release manager's) is a usage error."""
    repo = model_repo(tmp_path / "repo", {"code": ["src"]})
    env = {"MLCI_IMAGE": "", "MLCI_IMAGE_DIGEST": ""}
    code, out, err = _mlci(repo, env, "promote", "--env", "stage", "--if-configured")
    assert (code, out.strip()) == (0, "skipped: no promote.environments.stage"), err
    code, out, err = _mlci(repo, env, "promote", "--env", "stage", "--if-configured", "--json")
    assert code == 0 and json.loads(out) == {"skipped": "no promote.environments.stage"}, err
    code, _, err = _mlci(repo, env, "promote", "--env", "stage")
    assert code == 2 and "name the image to promote" in err, err
    config = json.loads((repo / "mlci.yaml").read_text())
    config["promote"] = {"environments": {"stage": {"image": "docker://127.0.0.1:9/ml/x", "branches": ["main"]}}}
    (repo / "mlci.yaml").write_text(json.dumps(config))
    code, out, err = _mlci(repo, env, "promote", "--env", "stage", "--if-configured")
    assert code == 0 and out.startswith("skipped: no image"), err
    code, _, err = _mlci(repo, env, "promote", "--env", "stage")
    assert code == 2 and "name the image to promote" in err, err


@pytest.mark.parametrize("tag", ["../x", "", "a/b", "1.0 ", "é", "x" * 129, "sha256-" + "ab" * 32 + ".sig",
                                 "sha256-" + "ab" * 32, "mlci-key-0123", "mlci-cache-0123"])
def test_a_tag_an_image_cannot_be_written_under_is_refused_before_any_write(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb, tag: str) -> None:
    """`--tag '../x'` went into the manifest PUT's path after the blobs, referrers and signature were copied
    (exit 3), `--tag ''` was ignored, and `--tag sha256-<hex>.sig` replaced another image's signature (exit 0)."""
    dev, stage = pair
    name = f"tags{abs(hash(tag)) % 10**8}"
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, name)
    env = _env(dev, stage)
    built = _built(repo, env, "1.0").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", built)[0] == 0
    mark = len(access_log(stage))
    code, _, err = _mlci(repo, env, "promote", built, "--env", "stage", "--tag", tag)
    assert code == 2 and err.startswith("mlci: error: --tag: ") and len(err.splitlines()) == 1, err
    assert not [e for e in access_log(stage)[mark:] if f"/ml/{name}/" in e.target], "wrote to the destination"


def test_a_commit_that_changes_no_image_input_promotes_the_image_its_build_reused(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    """After a docs- or config-only merge the build reuses the image built from the commit before (same inputs,
    same digest), whose revision label names that commit: promotion from the new commit's pipeline was refused
    ("was built from commit ..."), every time. The build records the reuse (`mlci-rev-<sha>`), promote accepts it,
    and an image no build of this commit produced is still refused."""
    dev, stage = pair
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "docsonly")
    env = _env(dev, stage)
    first = _built(repo, env, "1.0")
    (repo / "README.md").write_text("docs only\n")
    repos.commit_all(repo, "docs only")
    sha = repos.git(repo, "rev-parse", "HEAD").strip()
    code, _, err = _mlci(repo, env, "promote", first.rsplit("@", 1)[0], "--env", "stage")
    assert code == 1 and "whose build did not produce it" in err, err  # this commit's build has not run yet
    second = _built(repo, env, "1.1")
    assert second.rsplit("@", 1)[1] == first.rsplit("@", 1)[1]  # reused: the same digest
    tags = requests.get(f"http://{dev.host}/v2/ml/docsonly/tags/list", timeout=10).json()["tags"]
    assert f"mlci-rev-{sha}" in tags
    assert _mlci(repo, env, "scan", second.rsplit("@", 1)[0])[0] == 0
    code, _, err = _mlci(repo, env, "promote", second.rsplit("@", 1)[0], "--env", "stage")
    assert code == 0, err
    stage_tags = requests.get(f"http://{stage.host}/v2/ml/docsonly/tags/list", timeout=10).json()["tags"]
    assert not [t for t in stage_tags if t.startswith("mlci-")], stage_tags  # the build's own tags stay behind


def test_a_promotion_that_fails_after_copying_leaves_no_layout_it_created(
        tmp_path: Path, pair: tuple[Registry, Registry], clean_db: TrivyDb) -> None:
    """The image went into a new oci: directory, then the Nexus upload failed: the directory goes too, so a
    re-run does not find a layout of blobs without the image it was meant to hold."""
    dev, stage = pair
    layout = tmp_path / "stage-layout"
    repo = _repo(tmp_path / "repo", dev, stage, clean_db, "discarded", nexus_raw="http://127.0.0.1:9/repository/raw")
    config = json.loads((repo / "mlci.yaml").read_text())
    config["promote"]["environments"]["stage"]["image"] = f"oci:{layout}"
    (repo / "mlci.yaml").write_text(json.dumps(config))
    repos.commit_all(repo, "a layout as stage")
    env = _env(dev, stage)
    built = _built(repo, env, "1.0").rsplit("@", 1)[0]
    assert _mlci(repo, env, "scan", built)[0] == 0
    code, out, err = _mlci(repo, env, "promote", built, "--env", "stage")  # a config problem: before any write
    assert (code, out) == (2, "") and "plain HTTP to Nexus needs" in err and "copying blob" not in err, err
    code, _, err = _mlci(repo, {**env, **plain_http(dev.host, stage.host, "127.0.0.1:9")}, "promote", built,
                         "--env", "stage")
    assert code == 3 and "copying blob" in err and "Nexus 127.0.0.1:9" in err, err
    assert not layout.exists()
