"""Published model versions on disk, read without PyTorch.

Layout of a weights root (the shared volume the services read):

    root/
      LATEST                 the newest published version (what is served: twotower.index.serving)
      <version>/config.json  architecture, version, training metadata
      <version>/model.safetensors
      <version>/onnx/...     the towers exported for ONNX Runtime (when exported)

A service looks a version up in such roots: the weights volume, then its image's base model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = "twotower/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LATEST_FILE = "LATEST"


class ArtifactError(ValueError):
    """A model artifact is missing, unreadable, or does not match its config."""


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: missing (not a model artifact directory?)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable config: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ArtifactError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    return config


def latest_version(root: str | Path) -> str | None:
    """The version `root/LATEST` names, or None when nothing was published yet."""
    try:
        version = (Path(root) / LATEST_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return version or None


def find_version(version: str, roots: Sequence[str | Path]) -> Path:
    """The directory of `version` in the first root that has it."""
    for root in roots:
        directory = Path(root) / version
        if (directory / CONFIG_FILE).is_file():
            return directory
    searched = ", ".join(str(r) for r in roots) or "(no model directories configured)"
    raise ArtifactError(f"model version {version!r} is not published in {searched}")
