"""One module per CLI command: `add_parser(sub, common)` and `run(...) -> int`."""
from __future__ import annotations

import argparse
import os


def directory(text: str) -> str:
    """The argparse type of `--repo`: an existing directory, else exit 2 naming it before any work (a
    missing checkout must not read as a repo without mlci.yaml)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: {'not a directory' if os.path.exists(text) else 'not found'}")
    return text


def handed_on_image() -> str | None:
    """The image `mlci build --dotenv` handed on to later jobs: MLCI_IMAGE (with its tag), pinned by
    MLCI_IMAGE_DIGEST for a registry (a layout's entry is named by its tag); None when there is none."""
    image, digest = os.environ.get("MLCI_IMAGE"), os.environ.get("MLCI_IMAGE_DIGEST")
    if not image:
        return None
    return f"{image}@{digest}" if digest and image.startswith("docker://") and "@" not in image else image
