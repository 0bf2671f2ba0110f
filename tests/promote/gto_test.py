"""GTO's tags as mlci writes them, read back by the real `gto` CLI (1.10.1) in a fresh clone of the model
repository's origin: what `gto show` and `gto history` say is what mlci promoted."""
from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlci.core import log
from mlci.core.errors import ConfigError, EnvironmentProblem, ExitCode, GateFailed
from mlci.promote import gto
from tests.testing.gitremote import T0, bare_repo
from tests.testing.repos import commit_model_change, example_repo, git

MODEL = "credit-scoring"


@pytest.fixture(scope="module")
def _model_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The example model repository with three commits, made once per module."""
    repo = example_repo(tmp_path_factory.mktemp("gto") / "model")
    commits = [git(repo, "rev-parse", "HEAD").strip(), commit_model_change(repo, "0.05", 0.83),
               commit_model_change(repo, "0.07", 0.84)]
    return repo, commits


@pytest.fixture
def model_repo(_model_template: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A copy of the example model repository, its origin a bare repository on disk holding its commits."""
    template, commits = _model_template
    repo = shutil.copytree(template, tmp_path / "model", symlinks=True)
    origin = bare_repo(tmp_path / "model.git")
    git(repo, "remote", "set-url", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    return repo, origin, commits


def _gto(origin: Path, tmp_path: Path, *args: str) -> Any:
    """`gto ARGS --json` in a fresh clone of `origin` (so only pushed tags count)."""
    clone = tmp_path / f"clone-{len(list(tmp_path.glob('clone-*')))}"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    done = subprocess.run([str(Path(sys.executable).parent / "gto"), *args, "--json"], cwd=clone,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _promote(repo: Path, version: str | None, env: str, sha: str, minutes: int, by: str = "release-bob",
             push: bool = True) -> list[str]:
    what = version or "a branch build"
    return gto.write_gto_tags(repo, MODEL, version, env, sha=sha, message=f"mlci promote {what} to {env}", by=by,
                              when=T0 + datetime.timedelta(minutes=minutes), push=push)


def test_gto_show_and_history_list_what_mlci_promoted(model_repo: tuple[Path, Path, list[str]],
                                                       tmp_path: Path) -> None:
    repo, origin, (first, second, third) = model_repo
    assert gto.model_name(repo, None) == MODEL  # the example's dvc.yaml `artifacts:`
    assert _promote(repo, "v1.0.0", "stage", first, 0) == [f"{MODEL}@v1.0.0", f"{MODEL}#stage#1"]
    assert _promote(repo, "v1.1.0", "stage", second, 1) == [f"{MODEL}@v1.1.0", f"{MODEL}#stage#2"]
    assert _promote(repo, "v1.1.0", "prod", second, 2, by="release-carol") == [f"{MODEL}#prod#3"]
    assert _promote(repo, "v1.0.0", "prod", first, 3, by="release-carol") == [f"{MODEL}#prod#4"]  # a rollback
    assert _promote(repo, None, "dev", third, 4, by="ci") == [f"{MODEL}#dev#5"]  # a branch build: no version
    # a re-release of a commit GTO knows as v1.0.0: GTO keeps one version per commit; the stage is assigned
    assert _promote(repo, "v1.0.1", "qa", first, 5) == [f"{MODEL}#qa#6"]

    assert _gto(origin, tmp_path, "show") == {MODEL: {
        "version": "v1.1.0", "stage": {"dev": third, "prod": "v1.0.0", "qa": "v1.0.0", "stage": "v1.1.0"},
        "registered": True, "active": True}}
    history = _gto(origin, tmp_path, "history", MODEL)
    assert [(e["event"], e["version"], e["stage"], e["ref"], e["commit"], e["author"], e["timestamp"],
             e["message"]) for e in history] == [
        ("assignment", "v1.0.0", "qa", f"{MODEL}#qa#6", first, "release-bob", "2026-12-01T10:05:00+00:00",
         "mlci promote v1.0.1 to qa"),
        ("assignment", third, "dev", f"{MODEL}#dev#5", third, "ci", "2026-12-01T10:04:00+00:00",
         "mlci promote a branch build to dev"),
        ("assignment", "v1.0.0", "prod", f"{MODEL}#prod#4", first, "release-carol", "2026-12-01T10:03:00+00:00",
         "mlci promote v1.0.0 to prod"),
        ("assignment", "v1.1.0", "prod", f"{MODEL}#prod#3", second, "release-carol", "2026-12-01T10:02:00+00:00",
         "mlci promote v1.1.0 to prod"),
        ("assignment", "v1.1.0", "stage", f"{MODEL}#stage#2", second, "release-bob", "2026-12-01T10:01:00+00:00",
         "mlci promote v1.1.0 to stage"),
        ("registration", "v1.1.0", None, f"{MODEL}@v1.1.0", second, "release-bob", "2026-12-01T10:01:00+00:00",
         "mlci promote v1.1.0 to stage"),
        ("assignment", "v1.0.0", "stage", f"{MODEL}#stage#1", first, "release-bob", "2026-12-01T10:00:00+00:00",
         "mlci promote v1.0.0 to stage"),
        ("registration", "v1.0.0", None, f"{MODEL}@v1.0.0", first, "release-bob", "2026-12-01T10:00:00+00:00",
         "mlci promote v1.0.0 to stage"),
    ]


def test_a_stage_counter_another_promotion_took_meanwhile_is_counted_again(
        model_repo: tuple[Path, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two promoters with their own checkouts: the other pushes its stage tag after this one fetched the tags,
    with the same counter; the push is refused (the tag exists there) and the tag made again with the next."""
    repo, origin, (first, second, _) = model_repo
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    fetch = gto._fetch_tags
    raced: list[list[str]] = []

    def fetch_then_race(checkout: Path, model: str) -> None:
        fetch(checkout, model)
        if checkout == repo and not raced:
            raced.append([])
            raced[0] = _promote(other, "v1.0.0", "stage", first, 0, by="release-carol")

    monkeypatch.setattr(gto, "_fetch_tags", fetch_then_race)
    mine = _promote(repo, "v1.1.0", "stage", second, 1)

    assert raced == [[f"{MODEL}@v1.0.0", f"{MODEL}#stage#1"]]
    assert mine == [f"{MODEL}@v1.1.0", f"{MODEL}#stage#2"]
    assert git(repo, "tag", "-l", f"{MODEL}#*").split() == [f"{MODEL}#stage#1", f"{MODEL}#stage#2"]
    assert git(origin, "for-each-ref", "--format=%(refname:strip=2) %(taggername) %(*objectname)",
               "refs/tags/").splitlines() == [
        f"{MODEL}#stage#1 release-carol {first}", f"{MODEL}#stage#2 release-bob {second}",
        f"{MODEL}@v1.0.0 release-carol {first}", f"{MODEL}@v1.1.0 release-bob {second}"]


def test_a_version_tag_naming_another_commit_is_refused(model_repo: tuple[Path, Path, list[str]]) -> None:
    repo, origin, (first, second, _) = model_repo
    _promote(repo, "v1.0.0", "stage", first, 0)
    with pytest.raises(GateFailed) as caught:
        gto.check_version(repo, MODEL, "v1.0.0", second)
    assert caught.value.exit_code == ExitCode.GATE_FAILED
    assert str(caught.value) == (f"GTO: tag {MODEL}@v1.0.0 already registers commit {first[:12]}, not "
                                 f"{second[:12]}: a version names one commit; release a new version")
    with pytest.raises(GateFailed):
        _promote(repo, "v1.0.0", "prod", second, 1)
    assert git(origin, "tag", "-l").split() == [f"{MODEL}#stage#1", f"{MODEL}@v1.0.0"]


def test_without_push_the_tags_stay_in_the_checkout(model_repo: tuple[Path, Path, list[str]]) -> None:
    repo, origin, (first, *_) = model_repo
    assert _promote(repo, "v1.0.0", "stage", first, 0, push=False) == [f"{MODEL}@v1.0.0", f"{MODEL}#stage#1"]
    assert git(origin, "tag", "-l") == ""


def test_an_unreachable_origin_is_exit_3_without_its_credential(model_repo: tuple[Path, Path, list[str]],
                                                                fresh_secrets: None) -> None:
    repo, _, (first, *_) = model_repo
    git(repo, "remote", "set-url", "origin", "https://gitlab-ci-token:job-t0ken-secret@127.0.0.1:9/risk/model.git")
    with pytest.raises(EnvironmentProblem) as caught:
        _promote(repo, "v1.0.0", "stage", first, 0)
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    assert "\n" not in message and "job-t0ken-secret" not in message
    assert message.startswith("GTO: the model repository's origin https://[MASKED]@127.0.0.1:9/risk/model.git "
                              "cannot be reached: ")


def test_no_secret_reaches_a_tag(model_repo: tuple[Path, Path, list[str]], fresh_secrets: None) -> None:
    repo, origin, (first, *_) = model_repo
    log.add_secret("glpat-TagS3cret99")
    gto.write_gto_tags(repo, MODEL, "v1.0.0", "stage", sha=first, message="by token glpat-TagS3cret99",
                       by="bob glpat-TagS3cret99", when=T0, push=True)
    shown = git(origin, "for-each-ref", "--format=%(taggername) %(contents)", "refs/tags/")
    assert "glpat-TagS3cret99" not in shown and shown.count(log.MASK) == 4


def test_an_environment_gto_cannot_name_is_a_config_error(model_repo: tuple[Path, Path, list[str]]) -> None:
    repo, _, (first, *_) = model_repo
    with pytest.raises(ConfigError, match=r"promote\.environments\.stage-: not a GTO stage name"):
        _promote(repo, "v1.0.0", "stage-", first, 0)


def test_the_model_name_comes_from_config_or_dvc_yaml(tmp_path: Path) -> None:
    repo = tmp_path / "fraud-model"
    repo.mkdir()
    assert gto.model_name(repo, None) == "fraud-model"  # no dvc.yaml: the directory's name
    assert gto.model_name(repo, "scorer") == "scorer"
    (repo / "dvc.yaml").write_text("artifacts:\n  scorer: {path: m.pkl, type: model}\n  ranker: {path: r.pkl}\n")
    with pytest.raises(ConfigError, match=r"several models; name the one promoted in promote\.model"):
        gto.model_name(repo, None)
    assert gto.model_name(repo, "ranker") == "ranker"
    with pytest.raises(ConfigError, match="is not a GTO artifact name"):
        gto.model_name(repo, "bad name!")
    (repo / "dvc.yaml").write_text("artifacts: [\n")
    with pytest.raises(ConfigError, match=r"^dvc\.yaml:2: "):
        gto.model_name(repo, None)


@pytest.mark.parametrize(("ref", "version"), [
    ("v1.2.3", "v1.2.3"), ("1.2.3", "v1.2.3"), ("v2.0.0-rc.1+build.5", "v2.0.0-rc.1+build.5"), ("v1.2", None),
    ("main", None), (None, None), ("v01.2.3", None)])
def test_the_version_of_a_release_tag(ref: str | None, version: str | None) -> None:
    assert gto.version_of(ref) == version
