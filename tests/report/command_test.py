"""`mlci report`'s own inputs: `--out` and `--section` files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlci import cli
from mlci.commands.report import _section
from mlci.core import log
from tests.testing import repos


@pytest.mark.parametrize("make, expected", [
    (lambda t: (t / "out").mkdir(), "is a directory"),
    (lambda t: (t / "file").write_text("x"), "is not a directory"),
])
def test_out_that_cannot_be_a_file_is_exit_2_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, expected: str) -> None:
    make(tmp_path)  # type: ignore[operator]
    out = tmp_path / "out" if expected == "is a directory" else tmp_path / "file" / "report.md"
    # not even a git repo: the check comes first
    assert cli.main(["report", "--repo", str(tmp_path), "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlci: error: --out {out}: ") and expected in err and err.count("\n") == 1


def test_a_section_that_is_not_utf8_is_shown_with_replacement_characters_and_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(0)
    section = tmp_path / "latin1.md"
    section.write_bytes("### Données\nrésumé".encode("latin-1"))
    assert _section(section, tmp_path) == "### Donn\ufffdes\nr\ufffdsum\ufffd"
    assert capsys.readouterr().err == (f"mlci: warning: section {section} is not UTF-8 (byte 8); undecodable bytes "
                                       "shown as U+FFFD\n")


def test_a_section_that_is_a_directory_is_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(0)
    assert _section(tmp_path, tmp_path) == ""
    assert capsys.readouterr().err == f"mlci: warning: section {tmp_path} is not a file; left out\n"


def test_files_that_link_out_of_the_repository_never_reach_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A merge request can commit symlinks: a params file, a plot, a section or the template leading to a
    host file (a docker config's `auth`, /etc/shadow) must not put its content into the comment."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "config.json").write_text('{"auths": {"registry.bank": {"auth": "cm9ib3Q6SG9zdFNlY3JldA=="}}}')
    (host / "plot.json").write_text('[{"x": 1, "host_value": 424242}]')
    (host / "shadow.md").write_text("root:$6$hash-of-a-password\n")
    files = {"mlci.yaml": "version: 1\nreport:\n  sections: [section.md]\n", "metrics.json": '{"auc": 0.5}',
             "plots/ok.json": '[{"x": 1, "y": 2}]', "section.md": "fine\n"}
    repo = repos.tiny_dvc_repo(tmp_path / "repo", "metrics:\n- metrics.json\nplots:\n- plots/ok.json\n"
                                                  "- plots/host.json\nstages:\n  s:\n    cmd: echo\n    params: [x]\n",
                               files)
    (repo / "params.yaml").symlink_to(host / "config.json")
    (repo / "plots" / "host.json").symlink_to(host / "plot.json")
    (repo / "linked.md").symlink_to(host / "shadow.md")
    (repo / "section.md").unlink()
    (repo / "section.md").symlink_to(host / "shadow.md")
    log.setup(0)
    repos.git(repo, "config", "http.extraheader", "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX3Rvaw==")
    code = cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run", "--section", str(repo / "linked.md"),
                     "--section", str(host / "shadow.md"),  # named outside the repo on purpose: the user's choice
                     "--section", str(repo / ".git" / "config")])  # a checkout's own state: never a section
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cm9ib3Q6" not in out + err and "auths" not in out and "424242" not in out + err
    assert "extraheader" not in out and f"section {repo / '.git' / 'config'} is in git's or DVC's own state" in err
    assert out.count("hash-of-a-password") == 1  # only the section named outside the repository
    for warning in (f"`params.yaml` is a symlink out of the repository (to {host / 'config.json'}); not shown",
                    f"`plots/host.json` is a symlink out of the repository (to {host / 'plot.json'}); not shown",
                    f"section {repo / 'linked.md'} leads out of the repository (to {host / 'shadow.md'}); left out",
                    f"section {repo / 'section.md'} leads out of the repository (to {host / 'shadow.md'}); left out"):
        assert warning in err
    (repo / "mlci.yaml").write_text(f"version: 1\nreport:\n  template: {host / 'shadow.md'}\n")
    assert cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert f"report.template: {host / 'shadow.md'} leads out of the repository" in err
    assert "hash-of-a-password" not in out + err


def test_a_file_beside_the_models_directory_is_not_called_a_symlink(tmp_path: Path) -> None:
    """From a model's directory of a monorepo, DVC names another model's metrics `../other/metrics.json`: left
    out, but it is no symlink (the warning said it was one leading out of the repository)."""
    from mlci.report.diff import _outside_problem

    model = tmp_path / "models" / "credit"
    model.mkdir(parents=True)
    (model / "linked.json").symlink_to(tmp_path / "elsewhere.json")
    beside = _outside_problem(model, "../other/metrics.json", tmp_path / "models" / "other" / "metrics.json")
    assert beside == f"`../other/metrics.json` is outside this model's directory ({model}); not shown"
    linked = _outside_problem(model, "linked.json", tmp_path / "elsewhere.json")
    assert linked == f"`linked.json` is a symlink out of the repository (to {tmp_path / 'elsewhere.json'}); not shown"


def test_a_dry_run_with_json_prints_one_json_document_holding_the_body(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", "metrics:\n- metrics.json\n",
                               {"mlci.yaml": "version: 1\n", "metrics.json": '{"auc": 0.5}'})
    log.setup(0)
    assert cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is True and printed["body"].startswith("## ") and "| metric |" in printed["body"]
    assert cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("## ")  # without --json: the body itself


def test_a_metrics_file_that_is_not_utf8_is_named_with_its_byte(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """DVC crashes on it (`EncodingError.__init__() missing 1 required positional argument`); the report said that."""
    repo = repos.tiny_dvc_repo(tmp_path / "repo", "metrics:\n- metrics.json\n",
                               {"mlci.yaml": "version: 1\n", "metrics.json": '{"auc": 0.5}'})
    (repo / "metrics.json").write_bytes(b'{"auc": 0.6, "\xff": 1}')
    log.setup(0)
    assert cli.main(["report", "--repo", str(repo), "--base", "HEAD", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    line = ("not UTF-8 text at byte 14: metrics files are JSON, YAML or TOML in UTF-8 (DVC stops on any other byte): "
            "at this MR (the workspace): `metrics.json`")
    assert f"mlci: warning: {line}\n" in err and "EncodingError" not in out + err
