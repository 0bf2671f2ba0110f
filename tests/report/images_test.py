"""Image plots through GitLab's project uploads (against the stand-in), and every way an image can fail to
get into the comment: a warning and a pointer to the file, never silence and never a failed job."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlci.core.errors import EnvironmentProblem
from mlci.forge.base import Forge
from mlci.forge.gitlab import GitLab
from mlci.report.images import MAX_BYTES, Images
from tests.testing.forge import ForgeServer

TOKEN = "glpat-images-test-0001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def gitlab(forge: ForgeServer) -> GitLab:
    forge.add_user(TOKEN, "mlci-bot")
    forge.add_merge_request("bank/model", 1)
    return GitLab(forge.gitlab_api, "bank/model", 1, TOKEN, "GITLAB_TOKEN", None)


def _images(tmp_path: Path, forge: Forge | None, **env: str) -> Images:
    return Images(lambda: forge, False, tmp_path / "plots", env)


def test_upload_returns_the_url_gitlab_renders(gitlab: GitLab, forge: ForgeServer) -> None:
    url = gitlab.upload("baseline-roc.png", PNG)
    (stored,) = forge.uploads("bank/model")
    assert url == stored.url and stored.data == PNG and stored.filename == "baseline-roc.png"
    request = next(r for r in forge.requests if r.method == "POST" and r.path.endswith("/uploads"))
    assert request.path == "/api/v4/projects/bank%2Fmodel/uploads" and request.header("PRIVATE-TOKEN") == TOKEN


@pytest.mark.parametrize("status, body, expected", [
    (403, None, "GitLab 403 on POST /projects/bank%2Fmodel/uploads: 403 Forbidden"),
    (200, "<html>sign in</html>", "uploads: answered 200 with text/plain, not JSON; is forge.api_url"),
    (201, {"id": 1}, "uploads: answered without a string `url` (no such field); is forge.api_url"),
    (201, {"url": "javascript:alert(1)"}, "the answer's `url` is not a URL: 'javascript:alert(1)'"),
])
def test_a_failed_upload_is_one_line_exit_3(gitlab: GitLab, forge: ForgeServer, status: int, body: object,
                                            expected: str) -> None:
    forge.fail_next("POST", r"/uploads$", status, body=body)  # type: ignore[arg-type]
    with pytest.raises(EnvironmentProblem) as raised:
        gitlab.upload("x.png", PNG)
    assert expected in str(raised.value) and "\n" not in str(raised.value) and TOKEN not in str(raised.value)


def test_a_failed_upload_saves_the_image_links_the_job_artifact_and_warns(
        gitlab: GitLab, forge: ForgeServer, tmp_path: Path) -> None:
    forge.fail_next("POST", r"/uploads$", 403)
    (tmp_path / "roc.png").write_bytes(PNG)
    images = _images(tmp_path, gitlab, CI_JOB_URL="https://gitlab.bank/g/p/-/jobs/9", CI_PROJECT_DIR=str(tmp_path))
    shown = images.markdown("eval/roc.png", "this MR", "workspace", tmp_path / "roc.png")
    saved = tmp_path / "plots" / "this-MR-roc.png"
    # the artifact's path is relative to the project directory: an absolute one (`file//var/...`) is no URL GitLab
    # serves
    assert shown == ("[eval/roc.png (this MR)](https://gitlab.bank/g/p/-/jobs/9/artifacts/file/plots/this-MR-roc.png) "
                     f"(`{saved}` in the job's artifacts; the upload failed)")
    assert saved.read_bytes() == PNG
    (warning,) = images.warnings
    assert warning.startswith("plot eval/roc.png at this MR: not uploaded: GitLab 403 on POST")
    forge.fail_next("POST", r"/uploads$", 403)
    elsewhere = _images(tmp_path, gitlab, CI_JOB_URL="https://gitlab.bank/g/p/-/jobs/9",
                        CI_PROJECT_DIR=str(tmp_path / "project"))
    # outside the project directory: no artifact, no link
    shown = elsewhere.markdown("eval/roc.png", "this MR", "workspace", tmp_path / "roc.png")
    assert shown == f"`eval/roc.png` (this MR, workspace): saved as `{saved}` (the upload failed)"


def test_no_merge_request_saves_the_image_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "roc.svg").write_bytes(b"<svg/>")
    images = _images(tmp_path, None)
    shown = images.markdown("roc.svg", "baseline", "abc", tmp_path / "roc.svg")
    assert shown == f"`roc.svg` (baseline, abc): saved as `{tmp_path / 'plots' / 'baseline-roc.svg'}` " \
                    "(not in a merge request)"
    assert images.warnings == []


def test_a_huge_or_missing_image_is_a_warning(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)
    images = _images(tmp_path, None)
    assert images.markdown("huge.png", "this MR", "workspace", huge).endswith(": not shown (see the warnings)")
    images.markdown("gone.png", "baseline", "abc", tmp_path / "gone.png")
    assert images.warnings == [f"plot huge.png at this MR: {MAX_BYTES + 1} bytes, more than {MAX_BYTES} for a comment",
                               "plot gone.png at baseline: DVC wrote no image (No such file or directory)"]
    assert not (tmp_path / "plots").exists()


def test_a_dry_run_uploads_nothing_and_says_so(tmp_path: Path) -> None:
    def no_forge() -> Forge | None:
        raise AssertionError("a dry run must not even connect")
    images = Images(no_forge, True, tmp_path / "plots")
    assert images.markdown("roc.png", "baseline", "abc", tmp_path / "none.png") == \
        "`roc.png` (baseline, abc): dry run, not uploaded"
