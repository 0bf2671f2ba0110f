"""The job image's pip lock, made from ci/constraints.txt: every distribution `requirements.in` needs (mlci's
runtime dependencies with its extras, read from the installed metadata of the pinned dev venv), at its
constraints pin, hashed for the image's platform (CPython 3.11, glibc 2.36, x86_64: Debian bookworm).

    python ci/job-image/lock.py update [--wheels DIR]   # pip download (index) + sha256 -> requirements.lock
    python ci/job-image/lock.py check                   # the lock names exactly what the constraints say
    python ci/job-image/lock.py download DIR            # the lock's wheels, hash-checked, for the image
    python ci/job-image/lock.py wheel SRC OUT --wheels DIR   # a reproducible wheel of SRC (the mlci checkout)

A distribution with no wheel on the index (antlr4-python3-runtime 4.9.3, hydra-core's, is an sdist only) is
locked with two hashes, its sdist's and that of the wheel `wheel` builds from it (pip accepts either; the image
install takes only the wheel), and marked `# from sdist`: `download` fetches the sdist by its hash, builds the
wheel and refuses it unless its hash is the locked one. Wheels are built with the locked setuptools, no build
isolation, zip times at 1980-01-01T00:00:01Z (SOURCE_DATE_EPOCH=315532801, the layers' own constant) and umask
022, so the same source gives the same bytes. `update` and `download` reach the package index (PIP_INDEX_URL
for an internal mirror); `check` and `wheel` are offline."""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from mlci.image.deps import platform_tags  # noqa: E402  (the checkout's own mlci)
from mlci.image.python import Platform  # noqa: E402

LOCK = HERE / "requirements.lock"
INPUT = HERE / "requirements.in"
CONSTRAINTS = ROOT / "ci" / "constraints.txt"
# The image's platform (the base: Debian bookworm's python3 and glibc). Another base needs another lock.
PLATFORM = Platform((3, 11), "", "glibc", (2, 36), "x86_64", None)
MARKERS = {"python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
           "implementation_version": "3.11.2", "platform_python_implementation": "CPython", "os_name": "posix",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "platform_release": "", "platform_version": ""}
WHEEL_EPOCH = "315532801"  # 1980-01-01T00:00:01Z: the first second a zip can hold, as the layers' mtime
SDIST_MARK = "# from sdist"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _canon(name: str) -> str:
    return str(canonicalize_name(name))


def constraints() -> dict[str, tuple[str, str]]:
    """ci/constraints.txt: canonical name -> (name as written, version)."""
    pins: dict[str, tuple[str, str]] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.split("#", 1)[0].strip())
        if match:
            pins[_canon(match[1])] = (match[1], match[2])
    return pins


def _inputs() -> tuple[list[Requirement], dict[str, tuple[str, str]]]:
    """requirements.in: the requirements resolved through metadata, and the explicit `name==version` pins."""
    resolved: list[Requirement] = []
    pinned: dict[str, tuple[str, str]] = {}
    for line in INPUT.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = _PIN.match(text)
        if match:
            pinned[_canon(match[1])] = (match[1], match[2])
        else:
            resolved.append(Requirement(text))
    return resolved, pinned


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**MARKERS, "extra": extra}) for extra in ("", *sorted(extras)))


def wanted() -> list[tuple[str, str]]:
    """(name, version) of every distribution the image needs besides mlci itself, sorted by canonical name."""
    pins = constraints()
    resolved, explicit = _inputs()
    extras: dict[str, set[str]] = {}
    todo = [(r.name, set(r.extras)) for r in resolved]
    problems: list[str] = []
    while todo:
        name, more = todo.pop()
        key = _canon(name)
        if key in extras and more <= extras[key]:
            continue
        extras[key] = extras.get(key, set()) | more
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed in {sys.prefix} (make the venv with scripts/test)")
            continue
        if key != "mlci" and key not in explicit and pins.get(key, (name, dist.version))[1] != dist.version:
            problems.append(f"{name}: installed {dist.version}, ci/constraints.txt pins {pins[key][1]}")
        todo.extend((r.name, set(r.extras)) for r in map(Requirement, dist.requires or [])
                    if _applies(r, extras[key]))
    result: dict[str, tuple[str, str]] = {}
    for key in extras:
        if key == "mlci":
            continue
        if key in explicit:
            result[key] = explicit[key]
        elif key in pins:
            result[key] = pins[key]
        else:
            problems.append(f"{key}: needed by {INPUT.name} but not pinned in ci/constraints.txt")
    for key, pin in explicit.items():
        result.setdefault(key, pin)
    if problems:
        sys.exit("lock.py: " + "\n".join(problems))
    return [result[key] for key in sorted(result)]


def platform_args() -> list[str]:
    """pip's flags for the image's wheels: the same tags as mlci's native builder asks for (mlci.image.deps)."""
    py = f"{PLATFORM.python[0]}.{PLATFORM.python[1]}"
    return ["--only-binary=:all:", "--python-version", py, "--implementation", "cp",
            "--abi", f"cp{py.replace('.', '')}", *[a for tag in platform_tags(PLATFORM) for a in ("--platform", tag)]]


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True,
                   env={**os.environ, **(env or {})})


def locked(lock: Path = LOCK) -> list[tuple[str, str, list[str], bool]]:
    """(name, version, hashes, from sdist) of requirements.lock."""
    entries: list[tuple[str, str, list[str], bool]] = []
    for block in lock.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        words = block.split("#", 1)[0].split()
        if words:
            name, version = words[0].split("==", 1)
            entries.append((name, version, [w.removeprefix("--hash=") for w in words[1:]], SDIST_MARK in block))
    return entries


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def wheel(source: Path, out: Path, wheels: Path) -> Path:
    """Build SOURCE (a directory or an sdist) into a wheel in OUT, reproducibly, with the locked setuptools
    installed from WHEELS (no index, no build isolation); the wheel's path."""
    setuptools = next(e for e in locked() if _canon(e[0]) == "setuptools")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp) / "backend.lock"
        pin.write_text(f"{setuptools[0]}=={setuptools[1]} " + " ".join(f"--hash={h}" for h in setuptools[2]) + "\n")
        _pip("install", "-q", "--no-deps", "--require-hashes", "--no-index", "--find-links", str(wheels),
             "--target", f"{tmp}/backend", "-r", str(pin))
        if source.is_dir():  # a copy: setuptools writes build/ and *.egg-info into the tree it builds
            shutil.copytree(source, f"{tmp}/src", ignore=shutil.ignore_patterns("build", "*.egg-info", ".git"))
            source = Path(tmp) / "src"
        built = Path(tmp) / "built"
        old = os.umask(0o022)
        try:
            _pip("wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(built), str(source),
                 env={"PYTHONPATH": f"{tmp}/backend", "SOURCE_DATE_EPOCH": WHEEL_EPOCH, "PYTHONHASHSEED": "0"})
        finally:
            os.umask(old)
        (made,) = built.glob("*.whl")
        return Path(shutil.move(made, out / made.name))


def update(wheels: Path | None) -> None:
    """Download every wanted wheel for the image's platform (or its sdist, built here into a wheel) and write
    the lock with their sha256."""
    pins = wanted()
    with tempfile.TemporaryDirectory() as tmp:
        where = wheels or Path(tmp) / "wheels"
        hashes: dict[str, list[str]] = {}
        from_sdist: set[str] = set()
        if "setuptools" not in {_canon(n) for n, _ in pins}:
            sys.exit("lock.py: requirements.in must pin setuptools: it builds the wheels")
        try:  # one pip run; only when it fails, one per distribution to find those with no wheel
            _pip("download", "--no-deps", "-q", "-d", str(where), *platform_args(), *[f"{n}=={v}" for n, v in pins])
        except subprocess.CalledProcessError:
            for name, version in pins:
                try:
                    _pip("download", "--no-deps", "-q", "-d", str(where), *platform_args(), f"{name}=={version}")
                except subprocess.CalledProcessError:
                    key = _canon(name)
                    sdists = Path(tmp) / "sdists" / key
                    _pip("download", "--no-deps", "-q", "--no-binary", ":all:", "-d", str(sdists),
                         f"{name}=={version}")
                    (sdist,) = sdists.iterdir()
                    hashes[key] = [_sha256(sdist)]
                    from_sdist.add(key)
        _write(pins, where, hashes, from_sdist)  # setuptools' hash is in the lock now: `wheel` reads it
        for key in sorted(from_sdist):
            (sdist,) = (Path(tmp) / "sdists" / key).iterdir()
            hashes[key].insert(0, _sha256(wheel(sdist, where, where)))
        _write(pins, where, hashes, from_sdist)


def _write(pins: list[tuple[str, str]], where: Path, extra: dict[str, list[str]], from_sdist: set[str]) -> None:
    hashes: dict[tuple[str, str], str] = {}
    for file in where.glob("*.whl"):
        wheel_name, wheel_version, _, _ = parse_wheel_filename(file.name)
        hashes[(str(wheel_name), str(wheel_version))] = _sha256(file)
    lines = ["# The job image's pip lock (scripts/build-job-image adds the mlci wheel built from the checkout).",
             "# Generated by `python ci/job-image/lock.py update` from requirements.in and ci/constraints.txt,",
             f"# for {PLATFORM}. Do not edit: `lock.py check` (tests/jobimage) compares.", ""]
    for name, version in pins:
        key = _canon(name)
        found = hashes.get((key, version))
        listed = ([found] if found else []) + [h for h in extra.get(key, []) if h != found]
        if not listed:
            sys.exit(f"lock.py: {name}=={version}: pip downloaded no wheel for {PLATFORM}")
        mark = f"  {SDIST_MARK}" if key in from_sdist else ""
        lines.append(f"{name}=={version}" + "".join(f" \\\n    --hash={h}" for h in listed) + mark)
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")


def download(dest: Path) -> None:
    """The lock's wheels for the image into DEST, hash-checked; wheels of `# from sdist` entries built here
    and refused unless their hash is the locked one."""
    entries = locked()
    with tempfile.TemporaryDirectory() as tmp:
        binary, sdists = Path(tmp) / "binary.lock", Path(tmp) / "sdist.lock"

        def line(e: tuple[str, str, list[str], bool]) -> str:
            return f"{e[0]}=={e[1]} " + " ".join(f"--hash={h}" for h in e[2]) + "\n"
        binary.write_text("".join(line(e) for e in entries if not e[3]))
        sdists.write_text("".join(line(e) for e in entries if e[3]))
        _pip("download", "--no-deps", "--require-hashes", "-q", "-d", str(dest), *platform_args(), "-r", str(binary))
        if not any(e[3] for e in entries):
            return
        _pip("download", "--no-deps", "--require-hashes", "-q", "--no-binary", ":all:", "-d", f"{tmp}/sdists",
             "-r", str(sdists))
        for sdist in sorted(Path(f"{tmp}/sdists").iterdir()):
            made = wheel(sdist, dest, dest)
            made_name, made_version, _, _ = parse_wheel_filename(made.name)
            want = next(e[2] for e in entries if (_canon(e[0]), e[1]) == (str(made_name), str(made_version)))
            if _sha256(made) not in want:
                made.unlink()
                sys.exit(f"lock.py: {made.name}: built from its sdist with another hash than the lock's "
                         f"({_sha256(made)}): the build is not reproducible here")


def check(lock: Path = LOCK) -> list[str]:
    """What differs between requirements.lock and what requirements.in + ci/constraints.txt say."""
    have = {_canon(n): v for n, v, _, _ in locked(lock)}
    want = {_canon(n): v for n, v in wanted()}
    problems = [f"{k}: the lock has {have.get(k, 'nothing')}, the constraints say {want.get(k, 'nothing')}"
                for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    problems += [f"{n}: no --hash=sha256:" for n, _, hashes, _ in locked(lock)
                 if not any(h.startswith("sha256:") for h in hashes)]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update").add_argument("--wheels", type=Path, help="keep the downloaded wheels here")
    sub.add_parser("check").add_argument("--lock", type=Path, default=LOCK, help=argparse.SUPPRESS)
    sub.add_parser("download").add_argument("dest", type=Path)
    build = sub.add_parser("wheel")
    build.add_argument("source", type=Path)
    build.add_argument("out", type=Path)
    build.add_argument("--wheels", type=Path, required=True, help="holds the locked setuptools wheel")
    args = parser.parse_args()
    if args.command == "update":
        update(args.wheels)
    elif args.command == "check":
        problems = check(args.lock)
        if problems:
            sys.exit(f"{args.lock}: stale (run `python ci/job-image/lock.py update`):\n"
                     + "\n".join(problems))
    elif args.command == "download":
        download(args.dest)
    else:
        print(wheel(args.source, args.out, args.wheels))


if __name__ == "__main__":
    main()
