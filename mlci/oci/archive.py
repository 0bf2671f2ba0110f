"""`oci-archive:FILE[:TAG]`: a tar of an OCI image layout. Read by unpacking into a private temp dir;
written as a layout in that dir and packed (sorted, fixed metadata) to a temp file that is renamed
over FILE after every manifest write — the tag moves last, and a reader never sees half an archive."""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import weakref
from pathlib import Path

from mlci.core.errors import EnvironmentProblem
from mlci.oci.copy import LayoutEndpoint
from mlci.oci.layout import Layout
from mlci.oci.registry import Manifest


class ArchiveEndpoint(LayoutEndpoint):
    """A copy endpoint over an oci-archive file: a layout in a private temp dir, packed on each tag."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dir = Path(tempfile.mkdtemp(prefix="mlci-oci-archive-"))
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
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for item in sorted(p for p in self.dir.rglob("*") if not p.name.startswith(".tmp-")):
                    info = tar.gettarinfo(str(item), arcname=item.relative_to(self.dir).as_posix())
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    info.mode = 0o755 if item.is_dir() else 0o644
                    if item.is_file():
                        with item.open("rb") as handle:
                            tar.addfile(info, handle)
                    else:
                        tar.addfile(info)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        super().put_manifest(manifest, tag)
        self._pack()
