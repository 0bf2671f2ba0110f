"""A tiny repo laid out like DVC's example-get-started: metrics and plots are files inside a DVC output
directory (`outs: [eval]`), declared by top-level `metrics:` and `plots:`, pushed to a local DVC remote
and absent from git. Two commits (baseline and head) trained with different `quality`; CI sees a fresh
`git clone` with an empty DVC cache."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.testing.repos import commit_all, dvc, git

DVC_YAML = """\
stages:
  train:
    cmd: python src/train.py
    deps: [src/train.py]
    params: [quality]
    outs: [model/model.bin]
  evaluate:
    cmd: python src/evaluate.py
    deps: [src/evaluate.py, model/model.bin]
    params: [quality]
    outs: [eval]
metrics:
- eval/metrics.json
plots:
- ROC:
    template: simple
    x: fpr
    y:
      eval/plots/roc/train.csv: tpr
      eval/plots/roc/test.json: tpr
- Precision-Recall:
    template: linear
    x: recall
    y:
      eval/plots/prc.tsv: precision
- Loss:
    template: smooth
    x: step
    y:
      eval/plots/loss.yaml: loss
- Confusion-Matrix:
    template: confusion
    x: actual
    y:
      eval/plots/cm/test.json: predicted
- eval/plots/importance.png
"""

TRAIN = """\
import os, yaml
q = yaml.safe_load(open("params.yaml"))["quality"]
os.makedirs("model", exist_ok=True)
open("model/model.bin", "wb").write(("weights %s\\n" % q).encode() * 512)
"""

EVALUATE = """\
import json, os, yaml
from tests_png import png
q = yaml.safe_load(open("params.yaml"))["quality"]
for d in ("eval/plots/roc", "eval/plots/cm"):
    os.makedirs(d, exist_ok=True)
json.dump({"roc_auc": q, "avg_prec": {"test": round(q - 0.1, 4)}}, open("eval/metrics.json", "w"))
open("eval/plots/roc/train.csv", "w").write("fpr,tpr\\n0,0\\n0.5,%s\\n1,1\\n" % round(min(q + 0.05, 1), 4))
json.dump([{"fpr": 0, "tpr": 0}, {"fpr": 0.5, "tpr": q}, {"fpr": 1, "tpr": 1}], open("eval/plots/roc/test.json", "w"))
open("eval/plots/prc.tsv", "w").write("recall\\tprecision\\n0.2\\t%s\\n0.8\\t0.5\\n" % q)
open("eval/plots/loss.yaml", "w").write("".join("- {step: %d, loss: %s}\\n" % (s, round(1 - q * s / 4, 4))
                                                 for s in range(4)))
right = round(10 * q)  # of 10 test rows, 5 of each class
rows = [{"actual": a, "predicted": a if i < right / 2 else 1 - a} for a in (0, 1) for i in range(5)]
json.dump(rows, open("eval/plots/cm/test.json", "w"))
open("eval/plots/importance.png", "wb").write(png(int(255 * q)))
open("eval/predictions.csv", "w").write("id,score\\n" + "".join("%d,%s\\n" % (i, q) for i in range(200)))
"""

PNG = """\
import struct, zlib
def png(grey):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes([0, grey])))
            + chunk(b"IEND", b""))
"""


@dataclass(frozen=True)
class GetStarted:
    """The upstream repo, its DVC remote, and the two commits a report compares."""

    upstream: Path
    remote: Path
    base: str
    head: str
    images: dict[str, bytes]  # per commit, the bytes of eval/plots/importance.png


def build(root: Path) -> GetStarted:
    """Train the baseline and the head, push both to the remote; nothing of eval/ or model/ is in git."""
    upstream, remote = root / "upstream", root / "remote"
    upstream.mkdir(parents=True)
    remote.mkdir()
    git(upstream, "init", "-q", "-b", "main")
    dvc(upstream, "init", "-q")
    dvc(upstream, "remote", "add", "-d", "store", str(remote))
    (upstream / "src").mkdir()
    (upstream / "src" / "train.py").write_text(TRAIN)
    (upstream / "src" / "evaluate.py").write_text(EVALUATE)
    (upstream / "src" / "tests_png.py").write_text(PNG)
    (upstream / "dvc.yaml").write_text(DVC_YAML)
    (upstream / "mlci.yaml").write_text("version: 1\nreport:\n  gates:\n    eval/metrics.json:roc_auc: {min: 0.5}\n")
    shas, images = [], {}
    for quality in (0.8, 0.9):
        (upstream / "params.yaml").write_text(f"quality: {quality}\n")
        dvc(upstream, "repro", "-q")
        dvc(upstream, "push", "-q")
        shas.append(commit_all(upstream, f"quality {quality}"))
        images[shas[-1]] = (upstream / "eval" / "plots" / "importance.png").read_bytes()
    assert {"eval/metrics.json", "model/model.bin"}.isdisjoint(git(upstream, "ls-files").split())
    return GetStarted(upstream, remote, shas[0], shas[1], images)


def ci_clone(project: GetStarted, dest: Path, remote: Path | None = None) -> Path:
    """A fresh clone as a CI job gets it (no DVC cache); `remote` replaces the DVC remote's location."""
    subprocess.run(["git", "clone", "-q", str(project.upstream), str(dest)], check=True)
    if remote is not None:
        dvc(dest, "remote", "modify", "--local", "store", "url", str(remote))
    return dest


def eval_dir(project: GetStarted, rev: str) -> str:
    """The md5 of the `eval` output directory at `rev` (from dvc.lock)."""
    lock = yaml.safe_load(git(project.upstream, "show", f"{rev}:dvc.lock"))
    return str(next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == "eval"))


def remote_without(project: GetStarted, dest: Path, rev: str) -> Path:
    """A copy of the remote without what only `rev` has of `eval/` (its directory object and files): as if
    that commit's outputs had never been pushed."""
    shutil.copytree(project.remote, dest)
    objects = dest / "files" / "md5"
    keep = {e["md5"] for other in (project.base, project.head) if other != rev
            for e in json.loads((objects / eval_dir(project, other)[:2] / eval_dir(project, other)[2:]).read_text())}
    digest = eval_dir(project, rev)
    listing = json.loads((objects / digest[:2] / digest[2:]).read_text())
    for md5 in [digest, *(e["md5"] for e in listing if e["md5"] not in keep)]:
        (objects / md5[:2] / md5[2:]).unlink()
    return dest
