"""Model files that run code when they are loaded, found by content in a repository tree or an image's
layers, and judged by picklescan in-process.

Every regular file is sniffed by its first 64 KiB (mlci.scan.sniff); only pickle-like content is read to
the end, by mlci.scan.pickles' walker (flat memory, joblib arrays stepped over), inside zip archives
(PyTorch, .npz, joblib in zip), behind gzip/bz2/xz/lzma/zlib/zstd and after a .npy header of object dtype.
picklescan classifies each global the walk found: "dangerous" is a CRITICAL finding (loading the file runs
it), anything it does not know is one informational finding per file. Files that look like models but
were not checked (too large, broken, encrypted, a format that holds code mlci does not read) are
`Unscanned`, each with its reason; safetensors and plain .npy arrays are data by design and count as
scanned once their header is checked.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, cast

from mlci.core.errors import EnvironmentProblem
from mlci.core.fsutil import outside
from mlci.scan import layers, pickles, sniff, streams
from mlci.scan.findings import Finding, Unscanned

HEAD = pickles.HEAD
MAX_DEPTH = 3  # archives inside archives
MAX_MEMBERS = 100_000
_SKIPPED_DIRS = frozenset({".git"})
# picklescan lists functools.partial as dangerous (its test: partial(torch.load, path)). A partial only
# forwards to a callable that the same pickle imports itself, and that one is judged on its own
# (torch.serialization.load and posix.system are dangerous); scikit-learn models hold
# partial(sklearn.utils.validation.check_array), the example's among them. So: information, not a failure.
_FORWARDERS = frozenset({("functools", "partial")})
_NOT_READ = {
    "hdf5": "HDF5 (a Keras .h5 model or data): not checked; a Keras model's Lambda layers are Python code "
            "that runs when it is loaded",
    "onnx": "ONNX: not checked; it holds no Python code, but external-data paths and custom operator "
            "domains are resolved by the runtime that loads it",
    "gguf": "GGUF: not checked; its chat template (Jinja) is rendered by some loaders",
    "lz4": "lz4-compressed (joblib's compress='lz4'): not read, mlci has no lz4 decoder",
}


@dataclass(frozen=True)
class ModelScan:
    """What the model-file scan of one target found."""

    findings: tuple[Finding, ...] = ()
    unscanned: tuple[Unscanned, ...] = ()
    scanned: int = 0  # model files checked to the end (pickles walked, safetensors/.npy headers read)
    files: int = 0  # regular files sniffed


def scan_stream(name: str, stream: BinaryIO, *, size: int | None, max_bytes: int) -> ModelScan:
    """One file's bytes (a blob, an artifact) by content; `name` is the path findings give it."""
    scan = _Scan(max_bytes)
    shown = _printable(name)
    try:
        scan.file(_Where(shown, shown), stream, size)
    except streams.read_errors() as exc:
        scan.unscanned.append(Unscanned(shown, f"cannot be read: {_printable(str(exc))}"))
    return scan.result()


def scan_tree(root: Path, *, max_bytes: int) -> ModelScan:
    """Every regular file under `root` (`.git` skipped, `.dvc/cache` included), by content. A symlink is
    never followed out of `root` (listed as not scanned); one inside is read under its own name, and a
    file reached by several names (DVC's symlink or hardlink cache) is read once, under the first name
    outside `.dvc`."""
    scan = _Scan(max_bytes)
    seen: set[tuple[int, int]] = set()
    for rel, is_link in _tree(root, scan):
        shown = rel.as_posix()
        if is_link and outside(root, rel) is not None:
            scan.unscanned.append(Unscanned(shown, "a symlink out of the repository: not followed"))
            continue
        if is_link and any((root / rel).resolve().is_relative_to((root / d).resolve()) for d in _SKIPPED_DIRS):
            continue
        try:
            fd = os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if is_link else os.O_NOFOLLOW))
        except OSError as exc:
            if is_link and not (root / rel).exists():
                continue  # a dangling link
            scan.unscanned.append(Unscanned(shown, f"cannot be read: {exc.strerror or type(exc).__name__}"))
            continue
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            try:
                scan.file(_Where(shown, shown), handle, info.st_size, seekable=True)
            except streams.read_errors() as exc:
                scan.unscanned.append(Unscanned(shown, f"cannot be read: {_printable(str(exc))}"))
    return scan.result()


def scan_layout(layout: Path, manifest_digest: str, *, max_bytes: int) -> ModelScan:
    """Every regular file in every layer of the image `manifest_digest` of an OCI layout, streamed (nothing
    extracted), by content; paths are in-image paths. A file that a later layer removes or replaces is
    still reported (its layer blob still ships it), saying so."""
    scan = _Scan(max_bytes)
    descriptors = layers.image_layers(layout, manifest_digest)
    placed = _Placed()
    for index, layer in enumerate(descriptors):
        where = f"layer {index + 1} of {len(descriptors)} ({layer.digest[:19]})"
        try:
            for member in layers.members(layout, layer):
                placed.cover(member, index)
                if member.stream is None:
                    continue
                mark = (len(scan.findings), len(scan.unscanned))
                shown = _printable(member.path)
                try:
                    scan.file(_Where(shown, shown), member.stream, member.size)
                except streams.read_errors() as exc:
                    raise EnvironmentProblem(f"{layout}: {where} cannot be read ({_printable(str(exc))})") from None
                placed.add(scan, mark, member.path, index)
        except layers.NotALayer as exc:
            scan.unscanned.append(Unscanned(where, str(exc)))
    placed.annotate(scan, [f"layer {i + 1} of {len(descriptors)} ({d.digest[:19]})" for i, d in enumerate(descriptors)])
    return scan.result()


class _Placed:
    """Which layer each reported file came from, and which later layer removed or replaced it."""

    def __init__(self) -> None:
        self.entries: list[tuple[bool, int, str, int]] = []  # (a finding?, its index, in-image path, layer)
        self.by_path: dict[str, list[int]] = {}
        self.hidden: dict[int, int] = {}  # entry -> the layer that hides it

    def add(self, scan: _Scan, mark: tuple[int, int], path: str, layer: int) -> None:
        new = [(True, i) for i in range(mark[0], len(scan.findings))] + [
            (False, i) for i in range(mark[1], len(scan.unscanned))]
        for finding, i in new:
            self.by_path.setdefault(path, []).append(len(self.entries))
            self.entries.append((finding, i, path, layer))

    def cover(self, member: layers.Member, layer: int) -> None:
        """A later layer's entry at a reported path, a whiteout of it or of a directory above it."""
        if not self.by_path:
            return
        if member.removes is not None or member.opaque:
            gone = member.removes if member.removes is not None else member.path
            hits = [e for p, es in self.by_path.items() for e in es
                    if (p == gone and not member.opaque) or p.startswith(gone.rstrip("/") + "/")]
        else:
            hits = self.by_path.get(member.path, [])
        for entry in hits:
            if self.entries[entry][3] < layer:
                self.hidden.setdefault(entry, layer)

    def annotate(self, scan: _Scan, names: list[str]) -> None:
        for entry, (finding, i, _, layer) in enumerate(self.entries):
            note = f"In {names[layer]}"
            if entry in self.hidden:
                note += f"; removed or replaced by {names[self.hidden[entry]]}, but still shipped in the image"
            if finding:
                scan.findings[i] = replace(scan.findings[i], detail=f"{scan.findings[i].detail} {note}.")
            else:
                scan.unscanned[i] = replace(scan.unscanned[i], reason=f"{scan.unscanned[i].reason} ({note})")


def _tree(root: Path, scan: _Scan) -> list[tuple[Path, bool]]:
    """(path relative to root, is a symlink) of every file, sorted, those under .dvc last; a directory
    symlink out of the root is listed as not scanned."""
    found: list[tuple[Path, bool]] = []
    for directory, dirs, files in os.walk(root, onerror=lambda exc: scan.unreadable(root, exc)):
        base = Path(directory)
        for name in sorted(dirs):
            rel = (base / name).relative_to(root)
            if (base / name).is_symlink() and outside(root, rel) is not None:
                scan.unscanned.append(Unscanned(rel.as_posix(), "a directory symlink out of the repository: "
                                                                "not followed"))
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        found.extend(((base / n).relative_to(root), (base / n).is_symlink()) for n in files)
    return sorted(found, key=lambda item: (item[0].parts[0] == ".dvc", item[0].as_posix()))


@dataclass(frozen=True)
class _Where:
    """A file's path in its target (`path`: the repo path or in-image path) and what is shown as the
    finding's target (the path, with archive members after `:`)."""

    path: str
    target: str

    def member(self, name: str) -> _Where:
        return _Where(self.path, f"{self.target}:{_printable(name)}")


@dataclass
class _Scan:
    """Findings and files not scanned, as one target's files are read."""

    max_bytes: int
    findings: list[Finding] = field(default_factory=list)
    unscanned: list[Unscanned] = field(default_factory=list)
    scanned: int = 0
    files: int = 0
    levels: dict[tuple[str, str], str] = field(default_factory=dict)

    def result(self) -> ModelScan:
        return ModelScan(tuple(self.findings), tuple(self.unscanned), self.scanned, self.files)

    def unreadable(self, root: Path, exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else str(root)
        self.unscanned.append(Unscanned(where, f"cannot be read: {exc.strerror or type(exc).__name__}"))

    def skip(self, where: _Where, reason: str) -> None:
        self.unscanned.append(Unscanned(where.target, reason))

    def file(self, where: _Where, stream: BinaryIO, size: int | None, depth: int = 0, *,
             seekable: bool = False) -> None:
        """Sniff one file (or archive member: `depth` > 0) and check it if it is a model format;
        `seekable`: a file on disk, which a zip archive is read from in place."""
        if depth == 0:
            self.files += 1
        head = stream.read(HEAD)
        kind = sniff.sniff(head)
        if kind is None:
            return
        if kind in _NOT_READ:
            self.skip(where, _NOT_READ[kind])
        elif kind == "safetensors":
            self.safetensors(where, head, stream, size)
        elif kind == "npy":
            self.npy(where, head, stream, size)
        elif size is not None and size > self.max_bytes and kind != "zip":
            self.skip(where, f"{_size(size)}, over scan.model_max_mb ({_size(self.max_bytes)}): not read")
        elif kind == "pickle":
            self.pickle(where, streams.joined(head, stream), "a pickle")
        elif kind == "zip":
            self.archive(where, head, stream if seekable else None, stream, size, depth)
        else:
            self.compressed(where, kind, streams.joined(head, stream), depth)

    def pickle(self, where: _Where, stream: BinaryIO, what: str) -> None:
        """Walk a possible pickle to its end; bytes that turn out not to be one are left alone."""
        walked = pickles.walk(stream, limit=self.max_bytes)
        if pickles.verdict(walked) is None:
            return
        self.judge(where, walked)
        if walked.error is not None:
            checked = f"; the {len(walked.globals)} global(s) before that were checked" if walked.globals else ""
            self.skip(where, f"{what} that cannot be read to its end: {walked.error}{checked}")
        else:
            self.scanned += 1

    def compressed(self, where: _Where, kind: sniff.Format, stream: BinaryIO, depth: int) -> None:
        """A compressed stream (joblib's compress=, .pkl.gz): checked when it decompresses to a pickle or a
        .npy; anything else (a .tar.gz, a gzipped log) is not a model and is left alone."""
        inner = streams.decompressor(kind, stream)
        try:
            head = inner.read(HEAD)
        except streams.read_errors():  # not a compressed stream after all
            return
        found = sniff.sniff(head)
        if found == "pickle":
            self.pickle(where, streams.joined(head, inner), f"a {kind}-compressed pickle")
        elif found == "npy":
            self.npy(where, head, inner, None)

    def npy(self, where: _Where, head: bytes, stream: BinaryIO, size: int | None) -> None:
        """A .npy array: data only, unless its dtype holds objects (numpy pickles those after the header)."""
        try:
            objects, start = sniff.npy_header(head)
        except ValueError as exc:
            self.skip(where, f"a numpy .npy file whose header cannot be read: {exc}")
            return
        if not objects:
            self.scanned += 1
        elif size is not None and size > self.max_bytes:
            self.skip(where, f"{_size(size)}, over scan.model_max_mb ({_size(self.max_bytes)}): not read")
        else:
            self.pickle(where, streams.joined(head[start:], stream), "a .npy array of objects (a pickle)")

    def safetensors(self, where: _Where, head: bytes, stream: BinaryIO, size: int | None) -> None:
        """safetensors holds tensors and a JSON header, no code: safe by design, once the header is one."""
        length = struct.unpack("<Q", head[:8])[0]
        header = head[8:8 + length]
        if len(header) < length:
            header += stream.read(length - len(header))
        problem = "the file ends inside its header" if len(header) < length else sniff.safetensors_problem(
            header, size)
        if problem is None:
            self.scanned += 1
        else:
            self.skip(where, f"looks like safetensors, but {problem}")

    def archive(self, where: _Where, head: bytes, file: BinaryIO | None, stream: BinaryIO, size: int | None,
                depth: int) -> None:
        """A zip archive (PyTorch, .npz, .keras, joblib in zip): each member sniffed like a file."""
        if depth >= MAX_DEPTH:
            self.skip(where, f"a zip archive nested {depth} deep: not opened")
            return
        try:
            with streams.Seekable(file, head, stream, size, self.max_bytes) as seekable, \
                    zipfile.ZipFile(seekable) as archive:
                members = archive.infolist()
                if len(members) > MAX_MEMBERS:
                    self.skip(where, f"a zip archive of {len(members)} members (over {MAX_MEMBERS}): not opened")
                    return
                self.notes(where, [m.filename for m in members])
                for member in members:
                    self.member(where.member(member.filename), archive, member, depth)
        except streams.TooLarge:
            self.skip(where, f"a zip archive of {_size(size or 0)}, over scan.model_max_mb "
                             f"({_size(self.max_bytes)}): not opened")
        except (zipfile.LargeZipFile, *streams.read_errors()) as exc:  # type: ignore[misc]
            self.skip(where, f"a zip archive that cannot be read: {_printable(str(exc))}")

    def member(self, where: _Where, archive: zipfile.ZipFile, member: zipfile.ZipInfo, depth: int) -> None:
        if member.is_dir():
            return
        if member.flag_bits & 0x1:
            self.skip(where, "an encrypted zip member: not read")
            return
        try:
            with archive.open(member) as handle:
                self.file(where, cast(BinaryIO, handle), member.file_size, depth + 1)
        except (NotImplementedError, RuntimeError, *streams.read_errors()) as exc:  # type: ignore[misc]
            self.skip(where, f"a zip member that cannot be read: {_printable(str(exc))}")

    def notes(self, where: _Where, names: list[str]) -> None:
        """Archives whose code mlci does not read, though their pickles are checked."""
        if "config.json" in names and "metadata.json" in names:
            self.skip(where, "a Keras 3 archive: its config.json may name Lambda layers or custom objects, "
                             "code that Keras runs on load unless safe_mode is on (the default); not checked")
        if any("/code/" in f"/{n}" and n.endswith(".py") for n in names) and any(
                n.endswith("constants.pkl") for n in names):
            self.skip(where, "a TorchScript archive: its code/ is TorchScript that torch.jit.load compiles and "
                             "runs; not checked (its pickles are)")

    def judge(self, where: _Where, walked: pickles.Walk) -> None:
        """Findings for the globals a walk found: picklescan's "dangerous" fail, the rest is information."""
        levels = self.classify(list(walked.globals))
        notable = []
        for module, name in walked.globals:
            level = levels[(module, name)]
            if level == "dangerous" and (module, name) not in _FORWARDERS:
                self.findings.append(_dangerous(where, module, name))
            elif level != "innocuous":
                notable.append(_printable(f"{module}.{name}"))
        if notable:
            shown = ", ".join(notable[:20]) + (f" and {len(notable) - 20} more" if len(notable) > 20 else "")
            self.findings.append(Finding(
                kind="model", id="pickle-globals", severity="LOW", informational=True, target=where.target,
                path=where.path, title=f"{where.target}: {len(notable)} global(s) that picklescan does not list "
                                       "as dangerous (information)",
                detail=f"Loading the file imports {shown}. picklescan {_version()} does not list them as "
                       "dangerous; they are the classes and functions the model is made of."))

    def classify(self, found: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """picklescan's level (innocuous, suspicious, dangerous) of each global, asked once per scan."""
        new = [g for g in found if g not in self.levels]
        if new:
            self.levels.update(_picklescan(new))
        return self.levels


def _picklescan(found: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Ask picklescan through its public API: one small pickle that imports exactly these globals
    (STACK_GLOBAL of two strings, which it reads without guessing). A global it does not answer for is
    dangerous."""
    try:
        import logging

        from picklescan.scanner import scan_pickle_bytes
    except ImportError:
        raise EnvironmentProblem("the model scan needs picklescan: pip install 'mlci[scan]'") from None
    logging.getLogger("picklescan").disabled = True  # its own lines would duplicate mlci's findings
    data = bytearray(b"\x80\x04")
    for module, name in found:
        for text in (module, name):
            raw = text.encode("utf-8", "surrogatepass")
            data += b"X" + struct.pack("<I", len(raw)) + raw
        data += b"\x930"  # STACK_GLOBAL, POP
    data += b"N."
    result = scan_pickle_bytes(io.BytesIO(bytes(data)), "mlci", multiple_pickles=False)
    levels = {(g.module, g.name): g.safety.value for g in result.globals}
    return {g: levels.get(g, "dangerous") for g in found}


def _dangerous(where: _Where, module: str, name: str) -> Finding:
    if (module, name) == pickles.Unknown:
        return Finding(
            kind="model", id="pickle-computed-global", severity="CRITICAL", target=where.target, path=where.path,
            title=f"{where.target}: imports a global computed while it loads",
            detail="The pickle builds the name of something it imports at load time, so no scanner can tell "
                   "what runs: treat it as code execution on load.")
    shown = _printable(f"{module}.{name}")
    return Finding(
        kind="model", id=_finding_id(module, name), severity="CRITICAL", target=where.target, path=where.path,
        title=f"{where.target}: loading it calls {shown}",
        detail=f"The pickle imports {shown}, which picklescan {_version()} lists as dangerous: pickle.load, "
               "joblib.load and torch.load(weights_only=False) run it when the file is loaded "
               "(code execution).")


def _finding_id(module: str, name: str) -> str:
    """`pickle:MODULE.NAME`, within the exception ids mlci.yaml accepts ([\\w.:/+-], 200 characters)."""
    text = "".join(c if c.isalnum() or c in "._" else "_" for c in f"{module}.{name}")
    return f"pickle:{text}"[:200]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("picklescan")
    except PackageNotFoundError:
        return "?"


def _printable(text: str) -> str:
    """A name from the file as safe text: control characters and lone surrogates escaped, 200 at most."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 200 else text[:199] + "…"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10**9 else f"{n / 1e9:.2f} GB"
