"""The `train` section of mlci.yaml."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _doc(text: str) -> dict[str, Any]:
    return {"doc": text}


@dataclass(frozen=True)
class TrainConfig:
    """`train`: how `mlci repro` reproduces the repo's DVC stages."""

    remote: str | None = field(default=None, metadata=_doc(
        "DVC remote to pull from and push to; default: the repo's default remote (`core.remote`)."))
    pull: bool = field(default=True, metadata=_doc(
        "Pull data and the run-cache from the remote before `dvc repro` (when a remote is configured)."))
    push: bool = field(default=False, metadata=_doc("Push outputs and the run-cache after a successful run."))
    check_lock: bool | None = field(default=None, metadata=_doc(
        "Refuse a stale `dvc.lock` before and after running; default (null): on when `CI=true`."))
    check_determinism: bool = field(default=False, metadata=_doc(
        "Re-run every stage forced in a scratch copy and compare output hashes."))
    targets: tuple[str, ...] = field(default=(), metadata=_doc(
        "Stages or `dvc.yaml` files to reproduce; default: every stage of the repo."))
    output_tail: int = field(default=40, metadata=_doc(
        "Lines of a failed stage's output repeated in the error message."))

