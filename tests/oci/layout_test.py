"""OCI layouts and archives: many tags per manifest, an archive packed once per command, file modes
from the umask, and broken layouts as one clear error."""
from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.oci.archive import ArchiveEndpoint
from mlci.oci.copy import LayoutEndpoint
from mlci.oci.layout import HeldBlobs, Layout
from mlci.oci.manifest import OCI_MANIFEST, Descriptor, Manifest, NotFound, sha256_digest
from mlci.oci.smallblob import read_small


def _manifest(text: str) -> Manifest:
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "note": text}).encode()
    return Manifest(data, OCI_MANIFEST, sha256_digest(data))


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_one_manifest_keeps_every_tag_it_is_given(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    first, second = _manifest("a"), _manifest("b")
    for tag in ("v1", "mlci-key-abc", "latest"):
        layout.put_manifest(first, tag)
    assert {layout.get_manifest(t).digest for t in ("v1", "mlci-key-abc", "latest")} == {first.digest}
    layout.put_manifest(second, "latest")  # moving one tag leaves the others
    assert layout.get_manifest("latest").digest == second.digest
    assert layout.get_manifest("v1").digest == layout.get_manifest("mlci-key-abc").digest == first.digest
    layout.put_manifest(first, None)  # already listed: no untagged duplicate
    layout.put_manifest(first, "v1")  # the same tag again: unchanged
    entries = json.loads((tmp_path / "l" / "index.json").read_text())["manifests"]
    assert len(entries) == 3


def test_the_only_image_is_found_whatever_its_number_of_tags(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "l")
    layout.put_manifest(_manifest("a"), "v1")
    layout.put_manifest(_manifest("a"), "v2")
    assert layout.get_manifest(None).digest == _manifest("a").digest


def test_a_missing_tag_is_not_found_and_a_broken_layout_is_an_error(tmp_path: Path) -> None:
    endpoint = LayoutEndpoint(Layout(tmp_path / "l"))
    with pytest.raises(NotFound, match=r"/l: no OCI image layout there \(the directory does not exist\)$"):
        endpoint.get_manifest("v1")  # a mistyped path is named as such, not as a missing tag
    with pytest.raises(NotFound, match=r"/l\.tar: no oci-archive there \(the file does not exist\)$"):
        ArchiveEndpoint(tmp_path / "l.tar").get_manifest("v1")
    assert endpoint.layout.tags() == []
    endpoint.put_manifest(_manifest("a"), "v1")
    endpoint.put_manifest(_manifest("b"), None, child=True)
    assert endpoint.layout.tags() == ["v1"]
    with pytest.raises(NotFound):
        endpoint.get_manifest("v2")
    with pytest.raises(NotFound):
        endpoint.get_manifest("sha256:" + "0" * 64)
    (tmp_path / "l" / "index.json").write_text("{not json")
    with pytest.raises(EnvironmentProblem, match=r"index\.json: not valid JSON") as info:
        endpoint.get_manifest("v2")
    assert not isinstance(info.value, NotFound)  # only a missing tag means "not built yet"
    (tmp_path / "l" / "index.json").write_text('{"manifests": {"a": 1}}')
    with pytest.raises(EnvironmentProblem, match="not an OCI image index"):
        endpoint.get_manifest("v1")


def test_an_archive_is_written_once_on_commit_and_holds_every_tag(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "image.tar"
    archive = ArchiveEndpoint(path)
    blob = b"layer"
    archive.put_blob(Descriptor("application/octet-stream", sha256_digest(blob), len(blob)), lambda: io.BytesIO(blob))
    for tag in ("v1", "mlci-key-abc"):
        archive.put_manifest(_manifest("a"), tag)
    assert not path.exists()
    archive.commit()
    packed = path.stat()
    archive.commit()  # nothing new: not packed again
    assert path.stat().st_ino == packed.st_ino
    reread = ArchiveEndpoint(path)
    assert reread.get_manifest("v1").digest == reread.get_manifest("mlci-key-abc").digest
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert "index.json" in names and not any(Path(n).name.startswith(".") for n in names)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_layout_blobs_and_archives_get_the_mode_of_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        layout = Layout(tmp_path / "l")
        layout.put_blob(sha256_digest(b"x"), io.BytesIO(b"x"))
        layout.put_manifest(_manifest("a"), "v1")
        archive = ArchiveEndpoint(tmp_path / "a.tar")
        archive.put_manifest(_manifest("a"), "v1")
        archive.commit()
    finally:
        os.umask(old)
    blobs = list((tmp_path / "l" / "blobs" / "sha256").iterdir())
    assert len(blobs) == 2
    assert {stat.S_IMODE(p.stat().st_mode) for p in [*blobs, tmp_path / "a.tar"]} == {mode}


def _tag_many(root: str, worker: int) -> None:
    layout = Layout(Path(root))
    for n in range(15):
        layout.put_manifest(_manifest(f"{worker}-{n}"), f"w{worker}-{n}")


def test_builds_tagging_into_one_layout_at_once_lose_no_tag(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")  # two CI jobs on one runner writing the same oci: directory
    workers = [context.Process(target=_tag_many, args=(str(tmp_path / "l"), w)) for w in range(6)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0] * 6
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    assert len(index["manifests"]) == 6 * 15


def test_held_blobs_are_named_only_when_published_and_discarded_without_a_trace(tmp_path: Path, umask: None) -> None:
    """A build's layers go into the destination layout once, under temp names, named all at once."""
    layout = Layout(tmp_path / "l")
    held = HeldBlobs(layout)
    writers = [held.blob_writer("application/vnd.oci.image.layer.v1.tar") for _ in range(2)]
    for n, writer in enumerate(writers):
        writer.write(b"layer %d" % n)
    descriptors = [writer.finish() for writer in writers]
    assert [d.digest for d in descriptors] == [sha256_digest(b"layer %d" % n) for n in range(2)]
    assert not any(layout.has_blob(d.digest) for d in descriptors)  # finished, not yet visible
    assert held.publish() == [d.digest for d in descriptors]
    assert [layout.open_blob(d.digest).read() for d in descriptors] == [b"layer 0", b"layer 1"]
    assert {stat.S_IMODE(layout.blob_path(d.digest).stat().st_mode) for d in descriptors} == {0o644}
    assert sorted(p.name for p in (tmp_path / "l" / "blobs" / "sha256").iterdir()) == sorted(
        d.digest[7:] for d in descriptors)  # no temp file left

    other = Layout(tmp_path / "m")
    refused = HeldBlobs(other)
    done, halfway = refused.blob_writer("t"), refused.blob_writer("t")
    done.write(b"built")
    done.finish()
    halfway.write(b"half")
    refused.discard()  # one finished, one halfway: neither leaves a file
    assert list((tmp_path / "m" / "blobs" / "sha256").iterdir()) == []


def _hostile(root: Path, kind: str, name: str) -> None:
    """Put something that is not a small regular file at `name` inside a layout."""
    path = root / name
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with path.open("wb") as handle:
            handle.truncate(1 << 40)  # sparse: a terabyte that takes no disk, nor may it take memory
    elif kind == "directory":
        path.mkdir()


@pytest.mark.parametrize("kind, why", [("fifo", "is a FIFO, not a regular file"),
                                       ("device", "is a special file, not a regular file"),
                                       ("huge", "larger than|more bytes where its descriptor says"),
                                       ("directory", "is a directory, not a regular file")])
@pytest.mark.parametrize("target", ["index.json", "manifest", "blob"])
def test_a_hostile_layout_is_one_clear_error_never_a_hang_or_a_read_into_memory(tmp_path: Path, kind: str, why: str,
                                                                                target: str) -> None:
    """A FIFO under a manifest's name would block the reader forever, /dev/zero or a sparse terabyte would be read
    into memory: each is refused, naming the file, before a byte of it is read."""
    layout = Layout(tmp_path / "layout")
    layout.init()
    blob = b"layer bytes"
    layout.put_blob(sha256_digest(blob), io.BytesIO(blob))
    manifest = _manifest("m")
    layout.put_manifest(manifest, "v1")
    name = {"index.json": "index.json", "manifest": f"blobs/sha256/{manifest.digest[7:]}",
            "blob": f"blobs/sha256/{sha256_digest(blob)[7:]}"}[target]
    _hostile(layout.root, kind, name)
    endpoint = LayoutEndpoint(layout)
    with pytest.raises(EnvironmentProblem) as caught:
        if target == "blob" and kind == "huge":  # a layer may be huge: its reader holds it to its descriptor
            read_small(endpoint, Descriptor("x", sha256_digest(blob), len(blob)), 1 << 20, f"{layout.root}: blob")
        elif target == "blob":
            endpoint.open_blob(sha256_digest(blob)).close()
        else:
            endpoint.get_manifest("v1" if target == "index.json" else manifest.digest)
    shown = str(layout.root / "index.json") if target == "index.json" else f"{layout.root}: {target}"
    assert str(caught.value).startswith(shown) and re.search(why, str(caught.value)), caught.value


def test_a_manifest_named_by_digest_is_checked_against_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    manifest = _manifest("m")
    layout.put_manifest(manifest, "v1")
    assert LayoutEndpoint(layout).get_manifest(manifest.digest).data == manifest.data
    path = layout.blob_path(manifest.digest)
    path.write_bytes(manifest.data.replace(b'"m"', b'"x"'))  # swapped on disk, same name
    with pytest.raises(EnvironmentProblem, match="digest did not match"):
        LayoutEndpoint(layout).get_manifest(manifest.digest)


def test_an_archive_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "image.tar")
    refused = re.escape("image.tar: the oci-archive: is a FIFO, not a regular file")
    with pytest.raises(EnvironmentProblem, match=refused):
        ArchiveEndpoint(tmp_path / "image.tar")
