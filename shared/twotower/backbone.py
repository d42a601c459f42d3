"""Loading the shared sentence-transformer backbone from a path, a packaged model or a hub name."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from twotower.config import resolve_base_model

log = logging.getLogger(__name__)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_backbone(name: str, max_seq_length: int, device: str | None = None) -> SentenceTransformer:
    resolved = resolve_base_model(name)
    local = Path(resolved).is_dir()
    log.info("loading backbone %s (%s)", name, resolved if local else "hub")
    model = SentenceTransformer(resolved, device=device or default_device(), local_files_only=local)
    model.max_seq_length = max_seq_length
    return model
