from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlci.core import fsutil, log
from mlci.core.errors import UsageError


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_is_read_without_changing_it(umask_027: None) -> None:
    assert fsutil.umask() == 0o027
    assert os.umask(0o027) == 0o027  # still what the process set


def test_new_files_honour_the_umask_and_replaced_files_keep_their_mode(tmp_path: Path, umask_027: None) -> None:
    fsutil.atomic_write(tmp_path / "report.md", "x")
    assert _mode(tmp_path / "report.md") == 0o640  # 0666 & ~027, not mkstemp's 0600
    fsutil.atomic_write_json(tmp_path / "out.json", {"a": 1})
    assert _mode(tmp_path / "out.json") == 0o640
    (tmp_path / "script.sh").write_text("old")
    (tmp_path / "script.sh").chmod(0o755)
    fsutil.atomic_write(tmp_path / "script.sh", b"new")
    assert _mode(tmp_path / "script.sh") == 0o755 and (tmp_path / "script.sh").read_bytes() == b"new"
    fsutil.append_text(tmp_path / "logs" / "mlci.log", "line\n")
    assert _mode(tmp_path / "logs" / "mlci.log") == 0o640


def test_text_is_redacted_bytes_are_not(tmp_path: Path) -> None:
    log.add_secret("tok-zyxwvuts")
    fsutil.atomic_write(tmp_path / "a.txt", "token tok-zyxwvuts")
    fsutil.atomic_write(tmp_path / "b.bin", b"token tok-zyxwvuts")
    fsutil.append_text(tmp_path / "c.log", "token tok-zyxwvuts\n")
    fsutil.atomic_write_json(tmp_path / "d.json", {"token": "tok-zyxwvuts"})
    assert (tmp_path / "a.txt").read_text() == "token [MASKED]"
    assert (tmp_path / "b.bin").read_bytes() == b"token tok-zyxwvuts"  # image blobs are never rewritten
    assert (tmp_path / "c.log").read_text() == "token [MASKED]\n"
    assert (tmp_path / "d.json").read_text() == '{\n  "token": "[MASKED]"\n}\n'


def test_a_directory_as_output_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match=f"cannot write {tmp_path / 'out'}: is a directory; give a file name"):
        fsutil.atomic_write(tmp_path / "out", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp file left


def test_a_file_as_parent_directory_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=f"cannot write {tmp_path / 'file' / 'out.json'}: a parent is not a"):
        fsutil.atomic_write(tmp_path / "file" / "out.json", "x")


def test_a_symlink_is_replaced_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "mlci-report.md").symlink_to(victim)  # what a hostile merge request could commit
    fsutil.atomic_write(tmp_path / "mlci-report.md", "report")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "mlci-report.md").is_symlink() and (tmp_path / "mlci-report.md").read_text() == "report"


def test_a_log_that_is_a_symlink_is_never_appended_through(tmp_path: Path) -> None:
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA owner\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mlci.log").symlink_to(victim)  # a cache dir inside the checkout, as GitLab caches it
    with pytest.raises(UsageError, match=r"mlci\.log: a symlink, which mlci does not write through"):
        fsutil.append_text(tmp_path / "cache" / "mlci.log", "ssh-ed25519 BBBB attacker\n")
    assert victim.read_text() == "ssh-ed25519 AAAA owner\n"
    fsutil.append_text(Path("/dev/stderr"), "")  # /dev/stderr is a symlink too, and a log users choose


def test_an_output_whose_directory_links_out_of_the_working_directory_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "out").symlink_to(tmp_path / "etc")  # a committed `out -> /etc`
    (tmp_path / "repo" / "inner").mkdir()
    (tmp_path / "repo" / "here").symlink_to("inner")
    monkeypatch.chdir(tmp_path / "repo")
    with pytest.raises(UsageError, match=f"--out out/report.md: out is a symlink out of the working directory "
                                         f"\\(to {tmp_path / 'etc'}\\)"):
        fsutil.check_writable(Path("out/report.md"), "--out")
    fsutil.check_writable(Path("here/report.md"), "--out")  # a link that stays inside
    fsutil.check_writable(tmp_path / "etc" / "report.md", "--out")  # named outside: the user's own choice
    assert fsutil.outside(tmp_path / "repo", Path("out/x")) == tmp_path / "etc" / "x"
    assert fsutil.outside(tmp_path / "repo", Path("here/x")) is None
    assert fsutil.linked_out(tmp_path / "repo", Path("out")) == tmp_path / "etc"
    assert fsutil.linked_out(tmp_path / "repo", tmp_path / "etc") is None
    (tmp_path / "repo" / "loop").symlink_to("loop")
    assert fsutil.outside(tmp_path / "repo", Path("loop")) is not None  # a loop leads nowhere inside


def test_devices_and_fifos_are_written_in_place_and_a_fifo_without_reader_is_an_error(tmp_path: Path) -> None:
    fsutil.atomic_write(Path("/dev/null"), "discarded")
    assert Path("/dev/null").is_char_device()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="a FIFO with no reader"):  # never a hang
        fsutil.atomic_write(fifo, "x")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    for _ in range(200):  # the reader opens the FIFO; then the write goes through it
        try:
            fsutil.atomic_write(fifo, "through the pipe")
            break
        except UsageError:
            threading.Event().wait(0.01)
    reader.join(5)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
