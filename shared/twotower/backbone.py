"""Loading the shared sentence-transformer backbone from a path, a packaged model or a hub name."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


def resolve_base_model(name: str) -> str:
    """Turn a `base_model` setting into something `SentenceTransformer` can load.

    `pkg:<module>` names an installed package that carries a model (`<module>.get_model_path()`);
    an existing directory is used as is; anything else is passed through as a hub name.
    """
    if name.startswith("pkg:"):
        module_name = name.removeprefix("pkg:")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"base model {name!r}: package {module_name!r} is not installed") from exc
        return str(module.get_model_path())
    return name


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_backbone(name: str, max_seq_length: int, device: str | None = None) -> SentenceTransformer:
    resolved = resolve_base_model(name)
    local = Path(resolved).is_dir()
    log.info("loading backbone %s (%s)", name, resolved if local else "hub")
    model = SentenceTransformer(resolved, device=device or default_device(), local_files_only=local)
    model.max_seq_length = max_seq_length
    return model
