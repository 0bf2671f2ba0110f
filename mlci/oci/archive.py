"""`oci-archive:FILE[:TAG]`: a tar of an OCI image layout. Read by unpacking into a private temp dir;
written as a layout in that dir and packed (sorted, fixed metadata) once, when the command commits,
to a temp file renamed over FILE: a reader never sees half an archive, and a failed build leaves the
old archive as it was."""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import weakref
from pathlib import Path
from typing import BinaryIO

from mlci.core.errors import EnvironmentProblem
from mlci.oci.copy import LayoutEndpoint, check_writable_path
from mlci.oci.layout import Layout, published_mode
from mlci.oci.registry import Manifest


class ArchiveEndpoint(LayoutEndpoint):
    """A copy endpoint over an oci-archive file: a layout in a private temp dir, packed on commit()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dir = Path(tempfile.mkdtemp(prefix="mlci-oci-archive-"))
        self.dirty = False
        weakref.finalize(self, shutil.rmtree, self.dir, True)
        super().__init__(Layout(self.dir))
        if path.exists():
            self._unpack()

    def _unpack(self) -> None:
        try:
            with tarfile.open(self.path) as tar:
                tar.extractall(self.dir, filter="data")  # refuses absolute paths, .., devices and links out
        except (tarfile.TarError, OSError) as exc:
            raise EnvironmentProblem(f"{self.path}: not a readable oci-archive: {exc}") from None

    def _pack(self) -> None:
        self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for item in sorted(p for p in self.dir.rglob("*") if not p.name.startswith(".")):
                    info = tar.gettarinfo(str(item), arcname=item.relative_to(self.dir).as_posix())
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    info.mode = 0o755 if item.is_dir() else 0o644
                    if item.is_file():
                        with item.open("rb") as handle:
                            tar.addfile(info, handle)
                    else:
                        tar.addfile(info)
                raw.flush()
                os.fchmod(raw.fileno(), published_mode())
                os.fsync(raw.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_blob(self, digest: str, data: BinaryIO, size: int) -> None:
        super().put_blob(digest, data, size)
        self.dirty = True

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        super().put_manifest(manifest, tag)
        self.dirty = True

    def check_writable(self) -> None:
        """FILE is not a directory, and it can be written (its directory is made if missing)."""
        check_writable_path(self.path, directory=False)

    def commit(self) -> None:
        """Pack the archive if anything was written since it was opened (once per command)."""
        if self.dirty:
            self._pack()
            self.dirty = False
