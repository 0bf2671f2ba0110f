"""`mlci report`'s own inputs: `--out` and `--section` files."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci import cli
from mlci.commands.report import _section
from mlci.core import log


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
    assert _section(section) == "### Donn\ufffdes\nr\ufffdsum\ufffd"
    assert capsys.readouterr().err == (f"mlci: warning: section {section} is not UTF-8 (byte 8); undecodable bytes "
                                       "shown as U+FFFD\n")


def test_a_section_that_is_a_directory_is_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(0)
    assert _section(tmp_path) == ""
    assert capsys.readouterr().err == f"mlci: warning: section {tmp_path} is not a file; left out\n"
