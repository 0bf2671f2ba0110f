"""The model's DVC objects in a bundle: gathered on the connected side (the promoted revision's model outputs, as
promote/dvcdata.py chooses them; fetched into the DVC cache when missing; each object read once, its md5 checked
against its name and its sha256 computed in the same read), and, inside, put into the environment's DVC remote
so that `dvc pull` of that revision works there.

CONTRACT (issue 12 helpers): signatures fixed; filled in by the bdvc helper."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from mlci.bundle.manifest import DvcData
    from mlci.image.settings import ImageSettings
    from mlci.promote.settings import Environment


def member_name(oid: str) -> str:
    """The bundle file of object `oid`: `dvc/files/md5/<2>/<30>[.dir]` (DVC 3's remote layout)."""
    return f"dvc/files/md5/{oid[:2]}/{oid[2:]}"


@dataclass(frozen=True)
class ObjectFile:
    """One DVC object ready to be carried: where it is (the DVC cache), its size, md5 checked, sha256."""

    oid: str
    path: Path
    size: int
    sha256: str


def collect(repo: Path, image: ImageSettings, environment: Environment, revision: str, *,
            skip: Iterable[str] = ()) -> tuple[DvcData, list[ObjectFile]]:
    """The objects `revision`'s model outputs (and environment.dvc_outputs) need, fetched into the cache from the
    default remote when missing, hashed; `skip`: object ids a base bundle carried (listed in DvcData.objects,
    returned as files only when not skipped). EnvironmentProblem (exit 3) names an object no remote has."""
    raise NotImplementedError


@dataclass(frozen=True)
class Pushed:
    """What import put into the inside DVC remote."""

    remote: str
    copied: int
    present: int
    bytes: int


def missing(repo: Path, remote: str, oids: Sequence[str]) -> list[str]:
    """The object ids the DVC remote `remote` (a name in the repo's DVC config) lacks: an incremental bundle's base
    check, before anything is written."""
    raise NotImplementedError


def push(repo: Path, remote: str, data: DvcData, objects: Iterable[tuple[str, Callable[[], BinaryIO]]]) -> Pushed:
    """Put the carried objects (oid, opener of their verified bytes) into the DVC remote `remote`, then prove it
    has every object `data` needs (`dvc pull` of data.revision's outputs works); objects already there are not
    sent again (a re-run after an interruption)."""
    raise NotImplementedError
