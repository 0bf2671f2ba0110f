"""The dependency layer's pip run for the image's platform, with the real pip: the platform tags a C library
accepts, wheels for a Python other than the host's, pip's refusal (exit 4, naming the platform), and a
layer whose bytes do not depend on where the runner's venv lives (scripts' shebangs and RECORD)."""
from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mlci.core.errors import PipelineFailed
from mlci.image import deps
from mlci.image.entries import Collector
from mlci.image.layers import build_layer
from mlci.image.python import Platform
from mlci.image.scan import Scanner
from tests.testing.images import wheelhouse
from tests.testing.repos import ROOT

EXAMPLE_LOCK = ROOT / "example-model-repo" / "requirements.lock"


def _platform(python: tuple[int, int] = (3, 11), libc: tuple[int, int] = (2, 36), arch: str = "x86_64",
              interpreter: str | None = "/usr/bin/python3") -> Platform:
    return Platform(python, "", "glibc", libc, arch, interpreter)


def test_platform_tags_for_glibc_musl_and_other_machines() -> None:
    tags = deps.platform_tags(_platform(libc=(2, 28)))
    assert tags[:3] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64"]
    assert tags[tags.index("manylinux_2_17_x86_64") + 1] == "manylinux2014_x86_64"
    assert tags[tags.index("manylinux_2_12_x86_64") + 1] == "manylinux2010_x86_64"
    assert tags[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"] and len(tags) == 24 + 3
    arm = deps.platform_tags(_platform(libc=(2, 19), arch="aarch64"))
    assert arm == ["manylinux_2_19_aarch64", "manylinux_2_18_aarch64", "manylinux_2_17_aarch64",
                   "manylinux2014_aarch64"]
    musl = deps.platform_tags(Platform((3, 12), "", "musl", (1, 2), "aarch64", None))
    assert musl == ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64", "musllinux_1_0_aarch64"]


def _lock(path: Path, *names: str) -> Path:
    """The example lock's entries for `names` (each with all its hashes)."""
    keep, out = False, []
    for line in EXAMPLE_LOCK.read_text().splitlines():
        if line and not line[0].isspace():
            keep = line.split("==")[0] in names
        if keep and not line.lstrip().startswith("#"):
            out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


def _install(target: Path, platform: Platform, lock: Path) -> Path:
    deps.install(platform, lock.parent, lock.name, ("--no-index", "--find-links", str(wheelhouse())), target)
    return target


def test_wheels_for_a_python_other_than_the_hosts(tmp_path: Path) -> None:
    """Pure wheels install for 3.12 from a 3.11 host; numpy 2.4.6 has cp311 wheels only here, so 3.12 is
    pip's failure: exit 4, naming the target platform, with pip's own last lines."""
    assert sys.version_info[:2] != (3, 12)
    target = _install(tmp_path / "a", _platform((3, 12)), _lock(tmp_path / "pure.lock", "joblib", "threadpoolctl"))
    assert {p.name for p in target.glob("*.dist-info")} == {"joblib-1.6.0.dist-info", "threadpoolctl-3.8.0.dist-info"}
    with pytest.raises(PipelineFailed) as failed:
        _install(tmp_path / "b", _platform((3, 12)), _lock(tmp_path / "numpy.lock", "numpy"))
    message = str(failed.value)
    assert message.startswith("pip could not install image.lock numpy.lock for CPython 3.12 on glibc 2.36 x86_64 "
                              "(wheels tagged manylinux_2_36_x86_64 .. manylinux1_x86_64; exit 1):")
    assert "No matching distribution found for numpy==2.4.6" in message


def test_the_glibc_decides_which_wheels_are_found(tmp_path: Path) -> None:
    """numpy 2.4.6 is manylinux_2_27/2_28 only: a glibc 2.17 base (manylinux2014 and older) gets none. (The
    example image's test installs it for the Debian base's glibc 2.36 through the same tag list.)"""
    lock = _lock(tmp_path / "numpy.lock", "numpy")
    with pytest.raises(PipelineFailed, match=r"for CPython 3\.11 on glibc 2\.17 x86_64 \(wheels tagged "
                                             r"manylinux_2_17_x86_64 \.\. manylinux1_x86_64"):
        _install(tmp_path / "a", _platform(libc=(2, 17)), lock)


def _tool_wheel(wheels: Path) -> str:
    """A wheel with a console script (pip writes bin/tool with the running interpreter's shebang)."""
    wheels.mkdir(parents=True, exist_ok=True)
    files = {"tooldep/__init__.py": b"def main():\n    return 0\n",
             "tooldep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tooldep\nVersion: 1.0\n",
             "tooldep-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntool = tooldep:main\n",
             "tooldep-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = "".join(f"{n},sha256={b64(d)},{len(d)}\n" for n, d in files.items()) + "tooldep-1.0.dist-info/RECORD,,\n"
    path = wheels / "tooldep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in [*files.items(), ("tooldep-1.0.dist-info/RECORD", record.encode())]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _venv(path: Path) -> Path:
    """A venv at `path` whose python runs this venv's pip (a .pth adds its site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next((path / "lib").glob("python3*/site-packages"))
    (site / "host.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    return path / "bin" / "python"


def test_the_layer_does_not_depend_on_where_the_runners_venv_lives(tmp_path: Path) -> None:
    """Two runners' venvs, one at a path too long for a shebang (pip then writes a /bin/sh wrapper):
    the scripts name the image's interpreter, their RECORD lines match, and the layers are identical."""
    digest = _tool_wheel(tmp_path / "wheels")
    lock = tmp_path / "tool.lock"
    lock.write_text(f"tooldep==1.0 --hash=sha256:{digest}\n")
    pythons = [_venv(tmp_path / "a"), _venv(tmp_path / ("long-" * 30) / "b")]
    layers, raw = [], []
    for number, host in enumerate(pythons):
        target = tmp_path / f"target{number}"
        find_links = ("--no-index", "--find-links", str(tmp_path / "wheels"))
        subprocess.run(deps.pip_argv(_platform(), target, lock, find_links, str(host)), check=True)
        raw.append((target / "bin" / "tool").read_bytes())
        deps.fix_scripts(target, "/usr/bin/python3")
        script = (target / "bin" / "tool").read_bytes()
        assert script.startswith(b"#!/usr/bin/python3\n") and b"from tooldep import main" in script
        record = (target / "tooldep-1.0.dist-info" / "RECORD").read_text()
        sha = base64.urlsafe_b64encode(hashlib.sha256(script).digest()).rstrip(b"=").decode()
        assert f"../../bin/tool,sha256={sha},{len(script)}\n" in record
        entries = Collector(target, dvc_cache=lambda: None).entries([(".", "opt/mlci/site-packages")])
        layers.append(build_layer(entries, tmp_path / f"layers{number}", Scanner([]), "gzip").digest)
    assert raw[0].startswith(f"#!{pythons[0]}\n".encode()) and raw[1].startswith(b"#!/bin/sh\n'''exec' ")
    assert layers[0] == layers[1]


def test_scripts_get_env_python_when_the_interpreter_is_set_not_read(tmp_path: Path) -> None:
    digest = _tool_wheel(tmp_path / "wheels")
    (tmp_path / "tool.lock").write_text(f"tooldep==1.0 --hash=sha256:{digest}\n")
    target = tmp_path / "target"
    deps.install(_platform((3, 12), interpreter=None), tmp_path, "tool.lock",
                 ("--no-index", "--find-links", str(tmp_path / "wheels")), target)
    assert (target / "bin" / "tool").read_bytes().startswith(b"#!/usr/bin/env python3.12\n")
