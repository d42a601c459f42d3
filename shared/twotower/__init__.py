"""The two-tower model package: model definition, artifacts (save/load/publish) and data readers."""

from twotower.artifacts import (
    ArtifactError,
    latest_version,
    load,
    load_published,
    model_version,
    publish,
    save,
)
from twotower.config import PACKAGED_BASE_MODEL, ModelConfig
from twotower.model import DualTowerWithFC, TowerHead, format_document

__all__ = [
    "PACKAGED_BASE_MODEL",
    "ArtifactError",
    "DualTowerWithFC",
    "ModelConfig",
    "TowerHead",
    "format_document",
    "latest_version",
    "load",
    "load_published",
    "model_version",
    "publish",
    "save",
]
