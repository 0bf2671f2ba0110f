"""bundle.json: the aggregate (against coreutils sha256sum), the member-name allow-list, canonical bytes, the round
trip over generated manifests, and hostile bundle.json refused in one line naming the field, never a traceback."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci.bundle import manifest
from mlci.bundle.errors import BundleInvalid
from mlci.bundle.manifest import (
    FORMAT,
    MAX_MANIFEST,
    Artifact,
    Base,
    BaseBlob,
    BundleManifest,
    DvcData,
    FileEntry,
    ImageEntry,
    Provenance,
    Scan,
    TrivyDb,
)
from mlci.core.errors import UsageError
from mlci.promote.settings import ENV_NAME
from tests.testing import bundles

PROPERTY = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WHERE = "b.tar: bundle.json"


def _example() -> BundleManifest:
    """A manifest with every part filled: an image in a layout, DVC objects (one left to the base), artifacts,
    a trivy DB."""
    layer, top = "ab" * 32, hashlib.sha256(b"manifest").hexdigest()  # a blob is named by its digest
    files = {"oci-layout": b"{}", "index.json": b"[]", f"blobs/sha256/{top}": b"manifest",
             "dvc/files/md5/0c/" + "1" * 30: b"weights", "dvc/files/md5/0d/" + "2" * 30 + ".dir": b"[]",
             "artifacts/metrics/metrics.json": b"{}", "artifacts/dvc.lock": b"schema: '2.0'",
             "trivy/db/trivy.db": b"db", "trivy/db/metadata.json": b"{}"}
    base = Base(aggregate="sha256:" + "ee" * 32, blobs=(BaseBlob(f"sha256:{layer}", 1234),),
                dvc_objects=("0e" + "3" * 30,))
    image = ImageEntry(source="docker://dev.example:5000/churn:v1.2.0", tag="v1.2.0", digest="sha256:" + top)
    return bundles.make_manifest(files, images=(image,), base=base, artifacts=(
        Artifact("metrics/metrics.json", "artifacts/metrics/metrics.json"),
        Artifact("model/model.pkl", "dvc/files/md5/0c/" + "1" * 30), Artifact("dvc.lock", "artifacts/dvc.lock")))


EXAMPLE = _example()
DOC: dict[str, Any] = json.loads(manifest.dumps(EXAMPLE))


def _refused(doc: Any, field: str) -> str:
    """parse refuses `doc` (a tree, dumped as JSON, or bytes) in one line that names `where` and `field`."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()  # a lone surrogate as its \\u escape
    with pytest.raises(BundleInvalid) as caught:
        manifest.parse(data, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ") and "\n" not in message and field in message, message
    return message


# ---- the aggregate ---------------------------------------------------------------------------------------------


def test_the_aggregate_is_sha256sum_of_the_sorted_file_lines(tmp_path: Path) -> None:
    files = bundles.entries({"artifacts/z z.txt": b"1", "artifacts/é": b"22", "oci-layout": b"333",
                             "blobs/sha256/" + "0" * 64: b"", "artifacts/A": b"x"})
    lines = "".join(f"{e.sha256} {e.size} {e.path}\n"
                    for e in sorted(files, key=lambda e: e.path.encode("utf-8"))).encode("utf-8")
    (tmp_path / "list").write_bytes(lines)
    out = subprocess.run(["sha256sum", str(tmp_path / "list")], check=True, capture_output=True, text=True).stdout
    assert manifest.aggregate(files) == "sha256:" + out.split()[0]
    assert manifest.aggregate(tuple(reversed(files))) == manifest.aggregate(files)  # order given does not matter


def test_the_aggregate_changes_with_any_path_size_or_digest() -> None:
    files = bundles.entries({"artifacts/a": b"1", "artifacts/b": b"2"})
    first = files[0]
    changed = [dataclasses.replace(first, path="artifacts/c"), dataclasses.replace(first, size=first.size + 1),
               dataclasses.replace(first, sha256="f" * 64)]
    seen = {manifest.aggregate(files)} | {manifest.aggregate((other, files[1])) for other in changed}
    assert len(seen) == 4


# ---- member names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("oci-layout", "oci"), ("index.json", "oci"), ("blobs/sha256/" + "0a" * 32, "oci"),
    ("dvc/files/md5/0a/" + "b" * 30, "dvc"), ("dvc/files/md5/0a/" + "b" * 30 + ".dir", "dvc"),
    ("artifacts/dvc.lock", "artifact"), ("artifacts/model/model.pkl", "artifact"), ("artifacts/a b é", "artifact"),
    ("trivy/db/trivy.db", "trivy-db"), ("trivy/db/metadata.json", "trivy-db"),
])
def test_allowed_member_names_and_their_kinds(name: str, kind: str) -> None:
    assert manifest.check_member_name(name) == kind


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"), ("/etc/passwd", "absolute"), ("../etc/passwd", ".."), ("artifacts/../../x", ".."),
    ("artifacts//x", "empty or `.`"), ("artifacts/./x", "empty or `.`"), ("artifacts/x/", "empty or `.`"),
    ("./index.json", "empty or `.`"), ("artifacts\\x", "backslash"), ("artifacts/a\nb", "control"),
    ("artifacts/a\x7f", "control"), ("artifacts/a\u202eb", "control"), ("artifacts/\x85", "control"),
    ("artifacts/\ud800", "surrogate"), ("artifacts/" + "a" * 4087, "4096 bytes"),
    ("artifacts/" + "é" * 2044, "4096 bytes"), ("bundle.json", "not a name"), ("bundle.dsse.json", "not a name"),
    ("Index.json", "not a name"), ("blobs/sha256/" + "0A" * 32, "not a name"),
    ("blobs/sha256/" + "0" * 63, "not a name"),
    ("blobs/sha512/" + "0" * 128, "not a name"), ("blobs/sha256/" + "0" * 64 + ".tmp", "not a name"),
    ("dvc/files/md5/0a/" + "b" * 29, "not a name"), ("dvc/files/md5/0a" + "b" * 30, "not a name"),
    ("dvc/files/md5/0a/" + "b" * 30 + ".tmp", "not a name"), ("artifacts", "not a name"),
    ("trivy/db/a/b", "not a name"), ("trivy/db", "not a name"), ("dvc/config", "not a name"),
])
def test_refused_member_names_say_why(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        manifest.check_member_name(name)
    assert why in str(caught.value)


def test_the_4096_byte_limit_is_inclusive() -> None:
    assert manifest.check_member_name("artifacts/" + "a" * 4086) == "artifact"


# ---- canonical bytes -------------------------------------------------------------------------------------------


def _objects(tree: Any) -> list[dict[str, Any]]:
    found = [tree] if isinstance(tree, dict) else []
    for child in tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else ():
        found.extend(_objects(child))
    return found


def test_dumps_is_canonical_json_of_every_field() -> None:
    data = manifest.dumps(EXAMPLE)
    tree = json.loads(data)
    assert data == json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert "é".encode() in data and b"\\u" not in data  # UTF-8, not escaped
    assert tree == json.loads(json.dumps(dataclasses.asdict(EXAMPLE)))  # every field, nested, None as null
    assert set(tree) == {f.name for f in dataclasses.fields(BundleManifest)}
    assert set(tree["provenance"]["scan"]) == {f.name for f in dataclasses.fields(Scan)}
    assert tree["base"]["blobs"][0] == {"digest": EXAMPLE.base.blobs[0].digest, "size": 1234}  # type: ignore[union-attr]
    without = dataclasses.replace(EXAMPLE, provenance=dataclasses.replace(EXAMPLE.provenance, scan=None))
    assert json.loads(manifest.dumps(without))["provenance"]["scan"] is None


def test_the_same_content_gives_the_same_bytes() -> None:
    metrics: dict[str, dict[str, Any]] = {"b.json": {"z": 1, "a": 2}, "a.json": {"y": 0.5}}
    reordered = {name: dict(reversed(values.items())) for name, values in reversed(metrics.items())}
    one = dataclasses.replace(EXAMPLE, provenance=dataclasses.replace(EXAMPLE.provenance, metrics=metrics))
    two = dataclasses.replace(EXAMPLE, provenance=dataclasses.replace(EXAMPLE.provenance, metrics=reordered))
    assert manifest.dumps(one) == manifest.dumps(two)


def test_dumps_refuses_what_no_reader_would_take() -> None:
    huge = dataclasses.replace(EXAMPLE, extra={"pad": "x" * MAX_MANIFEST})
    with pytest.raises(UsageError, match="more than the"):
        manifest.dumps(huge)


# ---- generated manifests: the round trip -----------------------------------------------------------------------

_UNPRINTABLE: list[Any] = ["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_component = st.text(st.characters(exclude_categories=_UNPRINTABLE,
                                   exclude_characters="/\\"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")) | st.just("a b")
_relative = st.lists(_component, min_size=1, max_size=3).map("/".join)
_object_id = st.builds(lambda h, d: h[:32] + (".dir" if d else ""), _hex, st.booleans())
_printable = st.text(st.characters(exclude_categories=_UNPRINTABLE), max_size=12)
_some = _printable.filter(bool)
_any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_time = st.builds(lambda d, frac, zone: d.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone,
                  st.datetimes(min_value=datetime.datetime(1970, 1, 1)), st.sampled_from(["", ".5", ".123456789"]),
                  st.sampled_from(["Z", "+00:00", "-05:30"]))
_scalar = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), _any_text)
_json = st.recursive(st.none() | _scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    _any_text, inner, max_size=3), max_leaves=10)


@st.composite
def manifests(draw: st.DrawFn) -> BundleManifest:
    """Consistent bundle.json contents: every kind of file, images on carried or base blobs, DVC objects carried
    or left to the base, artifacts on listed files, optional parts absent or present."""
    blobs = draw(st.lists(_hex, max_size=4, unique=True))
    carried = draw(st.lists(_object_id, max_size=4, unique=True))
    paths = {f"blobs/sha256/{h}" for h in blobs} | {manifest.dvc_path(o) for o in carried}
    paths |= {f"artifacts/{name}" for name in draw(st.lists(_relative, max_size=3))}
    base = draw(st.none() | st.builds(
        lambda agg, bl, objs: Base(f"sha256:{agg}", tuple(BaseBlob(f"sha256:{h}", s) for h, s in sorted(bl.items())),
                                   tuple(sorted(objs))),
        _hex, st.dictionaries(_hex, st.integers(0, 1 << 40), max_size=3), st.sets(_object_id, max_size=3)))
    digests = [f"sha256:{h}" for h in blobs] + ([b.digest for b in base.blobs] if base else [])
    chosen = draw(st.lists(st.sampled_from(digests), max_size=3, unique=True)) if digests else []
    tags = draw(st.lists(st.from_regex(r"(?!sha256-|mlci-)[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True),
                         min_size=len(chosen),
                         max_size=len(chosen), unique=True))
    images = tuple(ImageEntry(draw(_some), tag, digest) for tag, digest in zip(tags, chosen, strict=True))
    if images:
        paths |= {"oci-layout", "index.json"}
    trivy = draw(st.none() | st.builds(TrivyDb, st.integers(0, 10), _time, st.none() | _time, st.none() | _time))
    if trivy:
        paths |= {"trivy/db/trivy.db", "trivy/db/metadata.json"}
    files = tuple(FileEntry(p, draw(st.integers(0, (1 << 63) - 1)),
                            p.removeprefix("blobs/sha256/") if p.startswith("blobs/") else draw(_hex),
                            manifest.check_member_name(p))
                  for p in sorted(paths, key=lambda p: p.encode("utf-8")))
    based = list(base.dvc_objects) if base else []
    dvc = None
    with_dvc: bool = draw(st.booleans())
    if carried or with_dvc:
        objects = set(carried) | set(draw(st.lists(st.sampled_from(based), max_size=3)) if based else ())
        dvc = DvcData(draw(st.sampled_from(["a" * 40, "b" * 64])), tuple(draw(st.lists(_relative, max_size=2))),
                      tuple(sorted(objects)))
    names = draw(st.lists(_relative, max_size=3, unique=True))
    artifacts = tuple(sorted((Artifact(n, draw(st.sampled_from([f.path for f in files]))) for n in names if files),
                             key=lambda a: a.name.encode("utf-8")))
    scan = draw(st.none() | st.builds(Scan, st.sampled_from(["pass", "fail"]), st.none() | _hex.map("sha256:".__add__),
                                      _hex.map("sha256:".__add__), st.none() | _time, _time))
    prov = Provenance(
        git_sha=draw(st.sampled_from(["0" * 40, "f" * 64])), git_ref=draw(st.none() | _printable),
        model=draw(st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-/_]{0,20}[a-zA-Z0-9])?", fullmatch=True)),
        version=draw(st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
        image_digest=images[0].digest if images else "sha256:" + draw(_hex),
        metrics=draw(st.dictionaries(_printable, st.dictionaries(_any_text, _scalar, max_size=3), max_size=2)),
        scan=scan, mlci_version=draw(_some), created_at=draw(_time), exported_by=draw(st.none() | _printable),
        environment=draw(st.from_regex(ENV_NAME, fullmatch=True)))
    extra = draw(st.dictionaries(_any_text, _json, max_size=2))
    return BundleManifest(files=files, images=images, dvc=dvc, artifacts=artifacts, trivy_db=trivy, provenance=prov,
                          base=base, aggregate=manifest.aggregate(files), extra=extra)


@PROPERTY
@given(manifests())
def test_parse_of_dumps_is_the_manifest(generated: BundleManifest) -> None:
    data = manifest.dumps(generated)
    assert manifest.parse(data, WHERE) == generated
    assert manifest.dumps(manifest.parse(data, WHERE)) == data


def test_the_example_round_trips_with_its_defaults() -> None:
    assert EXAMPLE.format == FORMAT and EXAMPLE.extra == {}
    assert manifest.parse(manifest.dumps(EXAMPLE), WHERE) == EXAMPLE


# ---- hostile bundle.json: each refusal names the field ---------------------------------------------------------


def _with(path: str, value: Any, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of DOC with the value at the dotted `path` (indexes as numbers) set; `...` deletes it."""
    tree = json.loads(json.dumps(doc if doc is not None else DOC))
    *parents, last = path.split(".")
    node = tree
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    at: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[at]
    else:
        node[at] = value
    result: dict[str, Any] = tree
    return result


def _with_aggregate(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its aggregate recomputed (so the refusal is for what was changed, not the aggregate)."""
    files = tuple(FileEntry(**entry) for entry in doc["files"])
    return _with("aggregate", manifest.aggregate(files), doc)


FILES = DOC["files"]


@pytest.mark.parametrize(("doc", "field"), [
    (_with("format", "mlci.bundle/v2"), "format"),
    (_with("format", 2), "format"),
    (_with("provenance", None), "provenance"),
    (_with("files", {}), "files"),
    (_with("files.0", "oci-layout"), "files[0]"),
    (_with("files.0.size", "4"), "files[0].size"),
    (_with("files.0.size", True), "files[0].size"),
    (_with("files.0.size", 4.0), "files[0].size"),
    (_with("files.0.size", -1), "files[0].size"),
    (_with("files.0.size", 1 << 63), "files[0].size"),
    (_with("files.0.sha256", FILES[0]["sha256"].upper()), "files[0].sha256"),
    (_with("files.0.sha256", FILES[0]["sha256"][:63]), "files[0].sha256"),
    (_with("files.0.sha256", "sha256:" + FILES[0]["sha256"]), "files[0].sha256"),
    (_with("files.0.kind", "dvc"), "files[0].kind"),
    (_with("files.0.mode", 420), "files[0].mode"),
    (_with("files.0.kind", ...), "missing key \"kind\""),
    (_with("files", [FILES[1], FILES[0], *FILES[2:]]), "out of order"),
    (_with("files", [FILES[0], *FILES]), "listed twice"),
    (_with("files.0.path", "../oci-layout"), "files[0].path"),
    (_with("files.0.path", "bundle.json"), "files[0].path"),
    (_with("images.0.digest", "cd" * 32), "images[0].digest"),
    (_with("images.0.digest", "sha256:" + "0" * 64), "images[0].digest"),
    (_with("images.0.tag", "v1 latest"), "images[0].tag"),
    (_with_aggregate(_with("files.2.sha256", "05" * 32)), "files[2].sha256"),  # the blob named by another digest
    (_with("images.0.tag", "sha256-" + "ab" * 32 + ".sig"), "images[0].tag"),  # another image's signature
    (_with("images.0.tag", "mlci-cache-0a1b"), "images[0].tag"),
    (_with("images.0.tag", 5), "images[0].tag"),
    (_with("images", [DOC["images"][0], DOC["images"][0]]), "images[1].tag"),
    (_with("images.0.source", "docker://x\n/y"), "images[0].source"),
    (_with("artifacts.0.path", "artifacts/absent"), "artifacts[0].path"),
    (_with("artifacts.0.name", "../../etc/cron.d/x"), "artifacts[0].name"),
    (_with("artifacts", list(reversed(DOC["artifacts"]))), "artifacts[1].name"),
    (_with("dvc.revision", "abc123"), "dvc.revision"),
    (_with("dvc.objects", list(reversed(DOC["dvc"]["objects"]))), "dvc.objects[1]"),
    (_with("dvc.objects", DOC["dvc"]["objects"][1:]), "dvc.objects"),
    (_with("dvc.objects.0", "0A" * 16), "dvc.objects[0]"),
    (_with("dvc.outputs.0", "/abs/model"), "dvc.outputs[0]"),
    (_with("dvc", None), "dvc"),
    (_with("trivy_db", None), "trivy_db"),
    (_with("trivy_db.updated_at", "yesterday"), "trivy_db.updated_at"),
    (_with("trivy_db.updated_at", "2026-02-30T00:00:00Z"), "trivy_db.updated_at"),
    (_with("trivy_db.updated_at", "2026-01-01T00:00:00"), "trivy_db.updated_at"),
    (_with("provenance.image_digest", "sha256:" + "9" * 64), "provenance.image_digest"),
    (_with("provenance.git_sha", "HEAD"), "provenance.git_sha"),
    (_with("provenance.scan.verdict", "maybe"), "provenance.scan.verdict"),
    (_with("provenance.metrics", {"metrics.json": 1}), "provenance.metrics.metrics.json"),
    (_with("provenance.metrics", {"m.json": {"auc": [1]}}), "provenance.metrics.m.json.auc"),
    (_with("provenance.metrics", {"m.json": {"auc": None}}), "provenance.metrics.m.json.auc"),
    (_with("provenance.environment", None), "provenance.environment"),
    (_with("provenance.environment", "Prod env"), "provenance.environment"),
    (_with("provenance.model", ""), "provenance.model"),
    (_with("provenance.model", "../../etc"), "provenance.model"),  # the Nexus directory MODEL/VERSION
    (_with("provenance.model", "/abs"), "provenance.model"),
    (_with("provenance.version", ".."), "provenance.version"),
    (_with("provenance.version", "1.0/../../x"), "provenance.version"),
    (_with("provenance.scan.policy_hash", "ef" * 32), "provenance.scan.policy_hash"),
    (_with("base.blobs.0.size", -5), "base.blobs[0].size"),
    (_with("base.aggregate", "ee" * 32), "base.aggregate"),
    (_with("extra", []), "extra"),
    (_with("signed_by", "me"), "signed_by"),
    (_with("aggregate", "sha256:" + "0" * 64), "aggregate"),
    (_with("aggregate", ...), "missing key \"aggregate\""),
    ([DOC], "expected an object"),
])
def test_hostile_fields_are_refused_naming_the_field(doc: Any, field: str) -> None:
    _refused(doc, field)


def test_a_changed_file_without_a_new_aggregate_is_refused() -> None:
    message = _refused(_with("files.0.size", FILES[0]["size"] + 1), "aggregate")
    assert "does not match the file list" in message


def test_a_dvc_object_the_base_does_not_hold_is_refused() -> None:
    message = _refused(_with("base.dvc_objects", []), "dvc.objects[")
    assert "neither a listed file nor a base object" in message


def test_an_image_on_a_blob_the_base_does_not_hold_is_refused() -> None:
    # the layer's blob is the base's; the image's own manifest must be carried or in the base
    doc = _with("images.0.digest", "sha256:" + "ab" * 32)
    doc = _with("provenance.image_digest", "sha256:" + "ab" * 32, doc)
    assert manifest.parse(json.dumps(doc).encode(), WHERE).images[0].digest == "sha256:" + "ab" * 32
    _refused(_with("base", None, doc), "images[0].digest")


def test_the_layout_files_are_required_with_images() -> None:
    files = [f for f in FILES if f["path"] != "index.json"]
    _refused(_with_aggregate(_with("files", files)), "index.json")


@pytest.mark.parametrize(("data", "why"), [
    (b"", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("\ufeff{}".encode(), "not JSON"),
    (b"{\"files\": [] ", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"{\"extra\": 1e400}", "out of a double's range"),
    (b"{\"extra\": NaN}", "NaN"),
    (b"{\"extra\": -Infinity}", "Infinity"),
    (b"{\"extra\": " + b"9" * 5000 + b"}", "not JSON this reader takes"),
    (b"{\"files\": [], \"files\": []}", "duplicate key \"files\""),
    (b"OVERSIZE", "more than the"),
])
def test_hostile_bytes_are_refused_in_one_line(data: bytes, why: str) -> None:
    assert why in _refused(b" " * (MAX_MANIFEST + 1) if data == b"OVERSIZE" else data, "")


def test_duplicate_keys_deep_inside_are_refused() -> None:
    text = manifest.dumps(EXAMPLE).decode()
    data = text.replace('"kind":"oci"', '"kind":"oci","kind":"oci"', 1).encode()
    assert "duplicate key \"kind\"" in _refused(data, "")


def test_lone_surrogates_are_refused_anywhere() -> None:
    _refused(_with("extra", {"note": "\ud800"}), "extra.note")
    _refused(_with("extra", {"\udfff": 1}), "extra")
    _refused(_with("provenance.model", "a\ud800"), "provenance.model")


# ---- property: nothing but BundleInvalid, whatever the bytes -----------------------------------------------------

_VALID = manifest.dumps(EXAMPLE)


def _parses_or_refuses(data: bytes) -> None:
    try:
        parsed = manifest.parse(data, WHERE)
    except BundleInvalid as refused:
        assert "\n" not in str(refused) and str(refused).startswith(WHERE)
    else:
        assert manifest.parse(manifest.dumps(parsed), WHERE) == parsed


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.sampled_from("fid")),
                min_size=1, max_size=4))
def test_mutated_bytes_never_raise_anything_but_bundle_invalid(edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(_VALID)
    for at, byte, how in edits:
        at = min(at, len(data) - 1)
        if how == "f":
            data[at] = byte
        elif how == "i":
            data.insert(at, byte)
        elif len(data) > 1:
            del data[at]
    _parses_or_refuses(bytes(data))


@PROPERTY
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), _json))
def test_garbage_never_raises_anything_but_bundle_invalid(data: bytes) -> None:
    _parses_or_refuses(data)


def _nodes(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in items:
        found.extend(_nodes(child, (*path, key)))
    return found


@PROPERTY
@given(st.data())
def test_structural_mutations_never_raise_anything_but_bundle_invalid(data: st.DataObject) -> None:
    tree = json.loads(_VALID)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_nodes(tree)))
        value = data.draw(_json | st.sampled_from([-1, 1 << 64, "", "..", "sha256:", [], {}]))
        if not path:
            tree = value
            continue
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    _parses_or_refuses(json.dumps(tree).encode())


WRONG = [None, 0, -1, 1.5, True, "", "..", "sha256:", [], {}, [None], {"": None}]


def test_every_single_node_replaced_or_removed_gives_bundle_invalid_or_a_manifest() -> None:
    """Exhaustive over the example's tree: each node (each key of each object, each array item) replaced by a
    value of every other type, and removed."""
    tree = json.loads(_VALID)
    for path in _nodes(tree)[1:]:
        for value in [*WRONG, ...]:
            mutated = json.loads(_VALID)
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            if value is ...:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            _parses_or_refuses(json.dumps(mutated).encode())
