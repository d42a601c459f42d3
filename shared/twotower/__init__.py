"""The two-tower package: the model and its artifacts, the serving engines, and the index layer.

    twotower.config / model / backbone / artifacts   the model (PyTorch): DualTowerWithFC, save/load
    twotower.registry                                 published versions on disk, without PyTorch
    twotower.engine                                   the two towers as a service runs them (torch or ONNX);
                                                      engine.export publishes a version with its ONNX export
    twotower.index                                    the Chroma index: store, documents, serving pointer
    twotower.beir / corpus / client / limits / text   data readers, the ingestion API's client and bounds

Importing `twotower` does not import PyTorch: the serving images run the ONNX engine without it. The
names below are loaded on first use (PEP 562), so `from twotower import DualTowerWithFC` still works.
"""

from __future__ import annotations

import importlib
from typing import Any

from twotower.config import PACKAGED_BASE_MODEL, ModelConfig
from twotower.text import format_document

_LAZY = {
    "ArtifactError": "twotower.registry",
    "latest_version": "twotower.registry",
    "DualTowerWithFC": "twotower.model",
    "TowerHead": "twotower.model",
    "load": "twotower.artifacts",
    "load_published": "twotower.artifacts",
    "model_version": "twotower.artifacts",
    "publish": "twotower.engine.export",
    "save": "twotower.artifacts",
}

__all__ = ["PACKAGED_BASE_MODEL", "ModelConfig", "format_document", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twotower' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
