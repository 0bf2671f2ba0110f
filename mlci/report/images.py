"""Image plots (PNG, SVG, ...) in the comment: uploaded to the forge's own storage where it has one
(GitLab's project uploads, on the bank's own GitLab: no third-party host), else saved beside the report
as a job artifact and linked (GitHub has no upload API). A dry run uploads nothing and says so."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mlci.core.errors import MlciError
from mlci.core.fsutil import atomic_write, check_not_linked_out
from mlci.forge.base import Forge
from mlci.report.mermaid import text

MAX_BYTES = 10 * 1024 * 1024  # an image plot larger than this does not belong in a comment
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Images:
    """Turns one image of one revision into Markdown, collecting a warning for anything not shown."""

    forge: Callable[[], Forge | None]  # called when the first image is published (None: no MR/PR)
    dry_run: bool
    artifact_dir: Path  # where images are saved when the forge cannot store them
    env: Mapping[str, str] = field(default_factory=dict)  # the CI variables that say where artifacts are
    warnings: list[str] = field(default_factory=list)

    def markdown(self, name: str, rev_label: str, rev_short: str, path: Path) -> str:
        """Markdown showing (or pointing to) `name` as DVC wrote it for one revision at `path`."""
        name = text(name)
        where = f"`{name}` ({rev_label}, {rev_short})"
        if self.dry_run:
            return f"{where}: dry run, not uploaded"
        try:
            size = path.stat().st_size
        except OSError as exc:
            return self._warn(f"plot {name} at {rev_label}: DVC wrote no image ({exc.strerror})", where)
        if size > MAX_BYTES:
            return self._warn(f"plot {name} at {rev_label}: {size} bytes, more than {MAX_BYTES} for a comment",
                              where)
        data = path.read_bytes()
        filename = f"{_UNSAFE.sub('-', rev_label)}-{_UNSAFE.sub('-', Path(name).name)}"
        alt = f"{name} ({rev_label})".replace("[", "(").replace("]", ")")
        why = "not in a merge request"
        try:
            forge = self.forge()
            url = forge.upload(filename, data) if forge is not None else None
            if url is not None:
                return f"![{alt}]({url})"
            if forge is not None:
                why = f"{forge.name} has no upload API"
        except MlciError as exc:
            self.warnings.append(f"plot {name} at {rev_label}: not uploaded: {exc}")
            why = "the upload failed"
        saved = self.artifact_dir / filename
        try:
            check_not_linked_out(saved)
        except MlciError as exc:
            return self._warn(f"plot {name} at {rev_label}: not saved: {exc}", where)
        atomic_write(saved, data)
        link = artifact_url(self.env, saved)
        if link:
            return f"[{alt}]({link}) (`{saved}` in the job's artifacts; {why})"
        return f"{where}: saved as `{saved}` ({why})"

    def _warn(self, warning: str, where: str) -> str:
        self.warnings.append(warning)
        return f"{where}: not shown (see the warnings)"


def artifact_url(env: Mapping[str, str], saved: Path) -> str | None:
    """Where a saved file can be seen: the GitLab job's artifact file, or the GitHub Actions run page
    (which lists the run's artifacts: GitHub has no URL for one file in an artifact)."""
    if env.get("CI_JOB_URL"):
        inside = job_artifact(env, saved)
        return None if inside is None else f"{env['CI_JOB_URL'].rstrip('/')}/artifacts/file/{quote(inside)}"
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return None


def job_artifact(env: Mapping[str, str], saved: Path) -> str | None:
    """`saved` as a GitLab job artifact's path: relative to the project directory (CI_PROJECT_DIR, else the
    current one), where GitLab takes artifacts from; None outside it (an absolute --out elsewhere: no artifact)."""
    project = Path(env.get("CI_PROJECT_DIR") or ".").resolve()
    where = Path(os.path.abspath(saved))
    return where.relative_to(project).as_posix() if where.is_relative_to(project) else None
