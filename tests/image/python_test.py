"""The base's Python, C library and machine, read from its layers: the debootstrapped Debian base as it is,
and hand-made layers for the layouts other bases have (python:3.12's /usr/local beside Debian's
/usr/bin/python3.11, Alpine's musl, RHEL's lib64, files removed by a later layer), from a layout and from
the real registry (a stream that cannot seek)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlci.core.errors import ConfigError
from mlci.image import python
from mlci.oci.copy import LayoutEndpoint, copy, open_endpoint
from mlci.oci.layout import Layout
from mlci.oci.manifest import Manifest
from mlci.oci.reference import parse
from tests.image.bases import DEBIAN_311, GLIBC_236, Entry, image
from tests.testing.images import BASE_TAG, base_layout
from tests.testing.registry import Registry


def _detect(image: tuple[LayoutEndpoint, Manifest, dict[str, Any]]) -> python.Found:
    return python.detect(*image, "base")


def test_the_debian_base_is_cpython_311_on_glibc_236() -> None:
    """The real debootstrapped rootfs, read from its layout (its Python and libc are what Debian 12 ships)."""
    layout = Layout(base_layout())
    manifest = layout.get_manifest(BASE_TAG)
    config = json.loads(layout.open_blob(json.loads(manifest.data)["config"]["digest"]).read())
    found = python.detect(LayoutEndpoint(layout), manifest, config, "base")
    assert found == python.Found((3, 11, ""), "/usr/bin/python3", ("glibc", 2, 36))
    platform = python.target(None, None, (LayoutEndpoint(layout), manifest, config), "base")
    assert str(platform) == "CPython 3.11 on glibc 2.36 x86_64"


def test_the_python3_on_the_images_path_wins_over_the_distributions(tmp_path: Path) -> None:
    """python:3.12 (full) keeps Debian's /usr/bin/python3.11 below its own /usr/local/bin/python3.12."""
    official: list[Entry] = [("usr/local/bin/python3.12", "file", b"\x7fELF"),
                             ("usr/local/bin/python3", "link", "python3.12"), ("usr/local/lib/python3.12", "dir", "")]
    path = {"config": {"Env": ["PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "PYTHON_VERSION=3.12.7"]}}
    found = _detect(image(tmp_path, [DEBIAN_311, official], compress=True, config=path))
    assert found == python.Found((3, 12, ""), "/usr/local/bin/python3", ("glibc", 2, 36))
    reordered = {"config": {"Env": ["PATH=/usr/bin:/usr/local/bin"]}}
    assert _detect(image(tmp_path / "2", [DEBIAN_311, official], config=reordered)).python == (3, 11, "")


def test_a_later_layers_whiteouts_and_opaque_dirs_remove_what_lies_below(tmp_path: Path) -> None:
    removed: list[Entry] = [("usr/bin/.wh.python3", "file", b""), ("usr/bin/.wh.python3.11", "file", b"")]
    assert _detect(image(tmp_path / "a", [DEBIAN_311, removed])).python is None
    opaque: list[Entry] = [("usr/bin/.wh..wh..opq", "file", b""), ("usr/bin/python3.13t", "file", b"\x7fELF"),
              ("usr/bin/python3", "link", "python3.13t")]
    assert _detect(image(tmp_path / "b", [DEBIAN_311, opaque])).python == (3, 13, "t")
    libc_gone: list[Entry] = [("usr/lib/.wh.x86_64-linux-gnu", "file", b"")]
    assert _detect(image(tmp_path / "c", [DEBIAN_311, libc_gone])).libc is None
    usr_replaced: list[Entry] = [("usr", "link", "/opt/nothing")]  # a dir replaced by a link: nothing below stays
    assert _detect(image(tmp_path / "d", [DEBIAN_311, usr_replaced])) == python.Found(None, None, None)


def test_alpine_musl_and_rhel_lib64_and_an_old_glibcs_file_name(tmp_path: Path) -> None:
    alpine: list[Entry] = [("lib/ld-musl-x86_64.so.1", "file", b"\x7fELF\x00musl\x00" + b"\x001.2.5\x00" + b"rest"),
              ("lib/libc.musl-x86_64.so.1", "link", "ld-musl-x86_64.so.1"),
              ("usr/local/bin/python3.12", "file", b"\x7fELF"), ("usr/local/bin/python3", "link", "python3.12")]
    found = _detect(image(tmp_path / "alpine", [alpine]))
    assert found == python.Found((3, 12, ""), "/usr/local/bin/python3", ("musl", 1, 2))
    debian_musl: list[Entry] = [("lib/x86_64-linux-musl/libc.so", "file", b"\x7fELF\x001.2.3\x00"),
                                ("lib/ld-musl-x86_64.so.1", "link", "x86_64-linux-musl/libc.so")]
    assert _detect(image(tmp_path / "debian-musl", [debian_musl])).libc == ("musl", 1, 2)
    ubi: list[Entry] = [("usr/lib64/libc.so.6", "file", b"GLIBC_2.2.5\x00GLIBC_2.28\x00GLIBC_2.3\x00no banner"),
           ("lib64", "link", "usr/lib64"), ("usr/bin/python3.9", "file", b""), ("usr/bin/python3", "link",
                                                                                "/etc/alternatives/python3"),
           ("etc/alternatives/python3", "link", "/usr/bin/python3.9")]
    assert _detect(image(tmp_path / "ubi", [ubi])) == python.Found((3, 9, ""), "/usr/bin/python3", ("glibc", 2, 28))
    buster: list[Entry] = [("lib/x86_64-linux-gnu/libc-2.28.so", "file", b"\x7fELF"),
              ("lib/x86_64-linux-gnu/libc.so.6", "link", "libc-2.28.so"), ("usr/bin/python3.7", "file", b"")]
    found = _detect(image(tmp_path / "buster", [buster]))  # no python3 link: the only python3.X found
    assert found == python.Found((3, 7, ""), "/usr/bin/python3.7", ("glibc", 2, 28))


def test_detection_over_the_registrys_stream(registry: Registry, tmp_path: Path) -> None:
    """A registry's blob is a stream that cannot seek: the tar is read as one."""
    source, _, config = image(tmp_path, [DEBIAN_311])
    dest, _ = open_endpoint(parse(f"docker://{registry.host}/base/debian:t"), (registry.host,))
    copy(source, "t", dest, "t")
    found = python.detect(dest, dest.get_manifest("t"), config, "base")
    assert found == python.Found((3, 11, ""), "/usr/bin/python3", ("glibc", 2, 36))


def test_detection_is_remembered_by_the_bases_manifest_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    endpoint, manifest, config = image(tmp_path, [DEBIAN_311])
    first = python.detect_cached(endpoint, manifest, config, "base")
    for layer in json.loads(manifest.data)["layers"]:  # the layers are not read again
        endpoint.layout.blob_path(layer["digest"]).unlink()
    assert python.detect_cached(endpoint, manifest, config, "base") == first
    assert len(list((tmp_path / "cache" / "base-platforms").iterdir())) == 1


def test_overrides_win_and_a_base_without_python_is_refused(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    debian = image(tmp_path, [DEBIAN_311])
    assert str(python.target("3.12", None, debian, "b")) == "CPython 3.12 on glibc 2.36 x86_64"
    assert str(python.target(None, "musl 1.1", debian, "b")) == "CPython 3.11 on musl 1.1 x86_64"
    no_python = image(tmp_path / "2", [[("usr/lib/x86_64-linux-gnu/libc.so.6", "file", GLIBC_236)]])
    with pytest.raises(ConfigError, match=r"^image.lock: the base oci:x has no python3 on its PATH"):
        python.target(None, None, no_python, "oci:x")
    with pytest.raises(ConfigError, match=r"is scratch|empty \(scratch\)"):
        python.target("3.11", None, (None, None, {"architecture": "amd64", "os": "linux"}), "")
    assert python.target("3.11", "glibc 2.17", (None, None, {"architecture": "arm64", "os": "linux"}), "").arch \
        == "aarch64"
    for bad, message in [("3", "image.python: '3' is not a Python version"), ("2.7", "CPython 3.7 or newer")]:
        with pytest.raises(ConfigError, match=message):
            python.target(bad, "glibc 2.36", debian, "b")
    with pytest.raises(ConfigError, match=r"image\.libc: 'uclibc 1\.0' is not like"):
        python.target("3.11", "uclibc 1.0", debian, "b")
    with pytest.raises(ConfigError, match="is windows/amd64"):
        python.target("3.11", "glibc 2.36", (None, None, {"architecture": "amd64", "os": "windows"}), "b")


def test_a_base_reporting_a_glibc_no_wheel_is_tagged_for_is_refused(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A crafted libc.so.6 (GLIBC_2.99999999) would make one pip --platform argument per minor version."""
    monkeypatch.setenv("MLCI_CACHE_DIR", str(tmp_path / "cache"))
    crafted = image(tmp_path, [[("usr/lib/x86_64-linux-gnu/libc.so.6", "file", b"GLIBC_2.17\x00GLIBC_2.99999999\x00"),
                                ("usr/bin/python3.11", "file", b""), ("usr/bin/python3", "link", "python3.11")]])
    with pytest.raises(ConfigError, match=r"^image.lock: the base oci:x reports glibc 2.99999999, which no wheel is "
                                          r"tagged for: set image.libc"):
        python.target(None, None, crafted, "oci:x")
    assert str(python.target(None, "glibc 2.36", crafted, "oci:x")) == "CPython 3.11 on glibc 2.36 x86_64"
