"""DVC's index of outputs, remembered by the pipeline files' fingerprint: a warm runner's build does not
import DVC, and any change to what DVC's index depends on asks DVC again (real DVC, real repos)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.testing import repos

FOREACH = """\
stages:
  train:
    foreach: ${models}
    do:
      cmd: python make.py ${item}
      deps: [make.py]
      outs:
      - out-${item}.txt
"""
PROBE = """\
import json, sys
from pathlib import Path
from mlci.dvcstage.dvc import stage_outputs
outputs, wdirs = stage_outputs(Path(sys.argv[1]))
print(json.dumps({"outputs": sorted(o.path for o in outputs), "dvc_imported": "dvc.repo" in sys.modules}))
"""


def _outputs(repo: Path, cache: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(repo)], capture_output=True, text=True, check=False,
                          env={**os.environ, "MLCI_CACHE_DIR": str(cache)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def test_a_warm_runner_knows_the_outputs_without_dvc_and_a_changed_pipeline_asks_dvc_again(tmp_path: Path) -> None:
    repo = repos.tiny_dvc_repo(tmp_path / "repo", FOREACH, {"make.py": repos.MAKE, "params.yaml": "models: [a, b]\n"})
    cache = tmp_path / "cache"
    first = _outputs(repo, cache)
    assert first == {"outputs": ["out-a.txt", "out-b.txt"], "dvc_imported": True}
    assert _outputs(repo, cache) == {"outputs": ["out-a.txt", "out-b.txt"], "dvc_imported": False}
    (repo / "params.yaml").write_text("models: [a, b, c]\n")  # the foreach list lives in params.yaml
    assert _outputs(repo, cache) == {"outputs": ["out-a.txt", "out-b.txt", "out-c.txt"], "dvc_imported": True}
    (repo / ".dvcignore").write_text("sub\n")  # what DVC collects changes with .dvcignore
    assert _outputs(repo, cache)["dvc_imported"] is True


TEMPLATED_WDIR = """\
stages:
  train:
    foreach: [a, b]
    do:
      wdir: ${item}
      cmd: python ../make.py
      params:
      - p.yaml:
        - x
      outs:
      - out.txt
"""


def test_a_file_named_by_template_is_always_asked_of_dvc(tmp_path: Path) -> None:
    """Which p.yaml each stage reads is only known once DVC resolves `${item}`: never remembered."""
    repo = repos.tiny_dvc_repo(tmp_path / "repo", TEMPLATED_WDIR, {"make.py": repos.MAKE, "a/p.yaml": "x: 1\n",
                                                                  "b/p.yaml": "x: 2\n"})
    cache = tmp_path / "cache"
    for _ in range(2):
        assert _outputs(repo, cache) == {"outputs": ["a/out.txt", "b/out.txt"], "dvc_imported": True}
    assert not (cache / "dvc-index").exists()
