"""What `mlci build` reads: symlinks kept as links (and refused when they leave the repo), DVC cache
links of real DVC repos (symlink and hardlink cache types, an external cache dir), repo paths that must
stay inside the repo, and nothing written outside mlci's temp dir but the outputs the user names."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.image.support import build, image_files, model_repo, tree

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


def _image(tmp_path: Path, **image: object) -> dict[str, object]:
    return {"name": f"oci:{tmp_path / 'out'}", "code": ["src"], **image}


@pytest.mark.parametrize("links", [
    {"src/creds": "/etc/shadow"},  # the case: absolute
    {"src/creds": "../../../../../../../../etc/shadow"},  # relative, out through ..
    {"src/creds": "hop", "src/hop": "../outside-link"},  # a chain: in-repo link -> link out
    {"src/etc": "/etc"},  # a directory
])
def test_a_link_out_of_the_repo_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     links: dict[str, str]) -> None:
    repo = model_repo(tmp_path / "repo", _image(tmp_path), links=links)
    (tmp_path / "repo" / "outside-link").symlink_to("/etc/shadow")  # not committed: the chain's last hop
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2, run.err
    first = next(iter(links))
    assert f"src/{Path(first).name}" in run.err and "resolves outside the repo" in run.err
    assert "Traceback" not in run.err and not (tmp_path / "out").exists()


def test_the_shadow_file_never_becomes_a_regular_file_in_a_layer(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Before the fix a link to a secret file was copied in as a 0644 file with its bytes."""
    secret = tmp_path / "host-secret"
    secret.write_text("root:$6$not-for-images:19000:0:99999:7:::\n")
    repo = model_repo(tmp_path / "repo", _image(tmp_path), links={"src/shadow": str(secret)})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "src/shadow -> " in run.err
    blobs = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert not any(p.is_file() and b"not-for-images" in p.read_bytes() for p in blobs)


def test_links_inside_the_repo_stay_links(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = model_repo(tmp_path / "repo", _image(tmp_path, code=["src", "conf"]),
                      {"src/pkg/run.sh": "#!/bin/sh\n", "conf/app.yaml": "a: 1\n"},
                      links={"src/run": "pkg/run.sh", "src/pkgdir": "pkg", "src/conf": "../conf/app.yaml",
                             "src/dangling": "pkg/not-there"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    files = image_files(tmp_path / "out", "v1")
    for name, target in (("run", "pkg/run.sh"), ("pkgdir", "pkg"), ("conf", "../conf/app.yaml"),
                         ("dangling", "pkg/not-there")):
        member = files[f"app/src/{name}"]
        assert isinstance(member, tarfile.TarInfo) and member.issym() and member.linkname == target
    assert files["app/conf/app.yaml"] == b"a: 1\n"
    assert "app/src/pkgdir/run.sh" not in files  # a linked directory is not walked into


@pytest.mark.parametrize("key, value", [
    ("artifacts", ["../x"]), ("artifacts", ["model/../../x"]), ("code", ["/etc"]), ("code", ["src", "/tmp"]),
    ("lock", "../requirements.lock"), ("lock", "/etc/passwd"),
])
def test_repo_paths_must_stay_inside_the_repo(tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
                                              value: object) -> None:
    """Before the fix `../x` gave an empty artifacts layer (the model missing) and could write elsewhere."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "weights.bin").write_bytes(b"w" * 100)
    repo = model_repo(tmp_path / "repo", _image(tmp_path, **{key: value}))
    before = tree(tmp_path)
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2, run.err
    assert f"image.{key}: " in run.err and "must be inside the repo" in run.err
    assert tree(tmp_path) == before  # nothing written, not even the destination


@pytest.mark.parametrize("key", ["context", "dockerfile"])
def test_the_dockerfile_builders_paths_must_stay_inside_the_repo(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                key: str) -> None:
    repo = model_repo(tmp_path / "repo", {"name": f"oci:{tmp_path / 'out'}", "builder": "buildah",
                                          key: "../elsewhere"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and f"image.{key}: ../elsewhere: must be inside the repo" in run.err


@pytest.mark.parametrize("name", ["requirements.lock", "dvc.yaml"])
def test_a_lock_or_dvc_yaml_linked_from_outside_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  name: str) -> None:
    """Read as a lock, /etc/shadow's lines would be quoted in the "not pinned" errors."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    repo = model_repo(tmp_path / "repo", _image(tmp_path, lock="requirements.lock"), links={name: str(secret)},
                      files={} if name == "requirements.lock" else {"requirements.lock": "x==1 --hash=sha256:00\n"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and f"{name} -> {secret}: the link resolves outside the repo" in run.err, run.err
    assert "hashhash" not in run.err


def test_a_path_through_a_directory_link_out_of_the_repo_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "weights.bin").write_bytes(b"w")
    repo = model_repo(tmp_path / "repo", _image(tmp_path, artifacts=["model/weights.bin"]),
                      links={"model": str(tmp_path / "elsewhere")})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and "model/weights.bin: its directory resolves outside the repo" in run.err


def test_git_metadata_never_goes_into_a_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = model_repo(tmp_path / "repo", _image(tmp_path, code=["."]))
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    names = set(image_files(tmp_path / "out", "v1"))
    assert "app/src/serve.py" in names and "app/mlci.yaml" in names
    assert not any(".git" in name.split("/") for name in names)
    for value in ([".git"], ["src/.git/config"]):
        repo_2 = model_repo(tmp_path / f"repo{len(value[0])}", _image(tmp_path, code=value))
        run = build(repo_2, capsys, "--tag", "v1")
        assert run.code == 2 and "never go into an image" in run.err


def _dvc(repo: Path, *args: str) -> None:
    subprocess.run(["dvc", *args], cwd=repo, check=True, capture_output=True)


def _dvc_repo(tmp_path: Path, cache_type: str, cache_dir: Path) -> Path:
    repo = model_repo(tmp_path / "repo", _image(tmp_path, artifacts=["model"]))
    _dvc(repo, "init", "-q")
    _dvc(repo, "config", "cache.type", cache_type)
    _dvc(repo, "cache", "dir", str(cache_dir))
    (repo / "model").mkdir()
    (repo / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    _dvc(repo, "add", "-q", "model/weights.bin")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "weights"], cwd=repo, check=True)
    return repo


@pytest.mark.parametrize("cache_type", ["symlink", "hardlink"])
def test_dvc_cache_links_into_the_configured_cache_are_the_files_content(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_type: str) -> None:
    """A shared cache outside the repo, as on runners: its links are dereferenced, nothing else is."""
    repo = _dvc_repo(tmp_path, cache_type, tmp_path / "shared-cache")
    weights = repo / "model" / "weights.bin"
    if cache_type == "symlink":
        assert weights.is_symlink() and Path(os.readlink(weights)).is_relative_to(tmp_path / "shared-cache")
    else:
        assert not weights.is_symlink() and weights.stat().st_nlink == 2
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 0, run.err
    member = image_files(tmp_path / "out", "v1")["app/model/weights.bin"]
    assert member == bytes(range(256)) * 64  # the content, as a regular file
    other = tmp_path / "other-cache" / "files" / "md5" / "ab"  # looks like a DVC cache, is not the one
    other.mkdir(parents=True)
    (other / "cdef").write_bytes(b"someone else's data")
    (repo / "model" / "other.bin").symlink_to(other / "cdef")
    run = build(repo, capsys, "--tag", "v2")
    assert run.code == 2 and "model/other.bin -> " in run.err and "resolves outside the repo" in run.err


def test_nothing_is_written_outside_the_temp_dir_but_the_named_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    repo = model_repo(tmp_path / "repo", _image(tmp_path, artifacts=["model"]), {"model/w.bin": "w"})
    before = tree(tmp_path)
    run = build(repo, capsys, "--tag", "v1", "--dotenv", str(tmp_path / "build.env"))
    assert run.code == 0, run.err
    new = {p.split(os.sep)[0] for p in tree(tmp_path) - before}
    assert new == {"out", "build.env", "cache"}  # the destination, the dotenv, mlci's own cache
    assert list(tmp.iterdir()) == []  # the temp dir is cleaned up


@pytest.mark.parametrize("name", [b"src/bad\xffname.py", b"src/new\nline.py", b"src/tab\tname", b"src/esc\x1b[2J"])
def test_a_file_name_that_is_not_utf8_or_holds_a_control_character_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: bytes) -> None:
    """Before, a name that is not UTF-8 was an internal error (the secret scan could not encode it)."""
    repo = model_repo(tmp_path / "repo", _image(tmp_path))
    with open(os.path.join(os.fsencode(repo), name), "wb") as handle:
        handle.write(b"x = 1\n")
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2, run.err
    shown = name.decode("utf-8", "backslashreplace").encode("unicode_escape").decode().replace("\\\\x", "\\x")
    assert run.err.strip() == (f"mlci: error: {shown}: a file name that is not UTF-8 or holds a control character "
                               "(a newline, say) cannot go into an image layer: rename it")
    assert not (tmp_path / "out").exists()


def test_a_link_whose_target_holds_a_newline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = model_repo(tmp_path / "repo", _image(tmp_path), links={"src/link": "a\nb"})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and run.err.strip() == ("mlci: error: src/link -> a\\nb: a link target that is not UTF-8 or "
                                                 "holds a control character cannot go into an image layer")


def test_an_absolute_link_into_the_repo_is_refused_as_absolute(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """In the image the repo is the working directory, not its runner path: the link would dangle there."""
    repo_dir = tmp_path / "repo"
    repo = model_repo(repo_dir, _image(tmp_path), files={"src/real.py": "x = 1\n"},
                      links={"src/alias.py": str(repo_dir / "src" / "real.py")})
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 2 and f"src/alias.py -> {repo_dir}/src/real.py: an absolute link target" in run.err, run.err
    assert "make the link relative" in run.err and "outside" not in run.err


def test_a_directory_the_build_cannot_list_stops_it_naming_the_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Root lists every directory, so the permission error a non-root runner gets is raised where os.walk
    lists; before, the directory's files were left out of the image and the build passed."""
    repo = model_repo(tmp_path / "repo", _image(tmp_path), files={"src/a.py": "a = 1\n", "src/private/b.py": "b\n"})
    listing = os.scandir

    def scandir(path: int | str | os.PathLike[str] = ".") -> object:
        if not isinstance(path, int) and os.fspath(path).endswith("/src/private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    run = build(repo, capsys, "--tag", "v1")
    assert run.code == 3 and "src/private: cannot list this directory (Permission denied)" in run.err, run.err
    assert not (tmp_path / "out").exists()
