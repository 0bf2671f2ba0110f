from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.testing import repos
from tests.testing.bundles import bundle_key, other_key  # noqa: F401 - fixtures: bundle signing keys
from tests.testing.forge import forge, forge_tls  # noqa: F401 - fixtures for every test module
from tests.testing.images import buildah_env  # noqa: F401 - a fixture for every test module
from tests.testing.postgres import postgres  # noqa: F401 - a session fixture for every test module
from tests.testing.registry import (  # noqa: F401 - fixtures
    registry,
    registry_basic,
    registry_stage,
    registry_tls,
    registry_token,
)
from tests.testing.s3 import s3  # noqa: F401 - a session fixture for every test module
from tests.testing.scanimage import vulnerable_image  # noqa: F401 - a session fixture for every test module
from tests.testing.trivydb import trivy_db  # noqa: F401 - a session fixture for every test module

# The installed_mlci session fixture, and the hooks that mark, schedule and time the tests that use it.
pytest_plugins = ["tests.testing.installed"]


@pytest.fixture(autouse=True, scope="session")
def _hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tools from this venv first; DVC without analytics; git identity without any global config."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        **repos.GIT_IDENTITY,
    })
    os.environ.pop("CI", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def trained_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model repo as its own git repo, trained once per session (DVC cache filled)."""
    repo = repos.example_repo(tmp_path_factory.mktemp("trained") / "example")
    repos.run_mlci(repo, "repro", check=True)
    return repo


@pytest.fixture
def example(trained_example: Path, tmp_path: Path) -> Path:
    """A private copy of the trained example (workspace, git history and DVC cache)."""
    return repos.copy_repo(trained_example, tmp_path / "example")


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A plain HTTP session that ignores proxy and CA environment variables (for poking the stand-ins)."""
    with requests.Session() as session:
        session.trust_env = False
        yield session
