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
