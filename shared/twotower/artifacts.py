"""Model artifacts: `config.json` + `model.safetensors` (no pickle) and a content-derived version.

The layout, read without PyTorch, is `twotower.registry`'s; publishing is `twotower.engine.export`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from twotower.config import ModelConfig
from twotower.model import DualTowerWithFC
from twotower.registry import (
    CONFIG_FILE,
    FORMAT,
    LATEST_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    latest_version,
    read_config,
)


def _tensors(model: DualTowerWithFC) -> dict[str, torch.Tensor]:
    state = {f"query_head.{k}": v for k, v in model.query_head.state_dict().items()}
    state.update({f"doc_head.{k}": v for k, v in model.doc_head.state_dict().items()})
    if model.backbone_trained:
        state.update({f"backbone.{k}": v for k, v in model.backbone.state_dict().items()})
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _version_of(config: dict[str, Any], backbone_trained: bool, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"model": config, "backbone_trained": backbone_trained}, sort_keys=True).encode()
    )
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:12]


def model_version(model: DualTowerWithFC) -> str:
    """Content-derived id: the same config and weights always give the same version."""
    return _version_of(model.config.to_dict(), model.backbone_trained, _tensors(model))


def save(model: DualTowerWithFC, directory: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write `config.json` and `model.safetensors` into `directory`; return the version."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(model)
    version = _version_of(model.config.to_dict(), model.backbone_trained, tensors)
    save_file(tensors, directory / WEIGHTS_FILE, metadata={"format": FORMAT, "version": version})
    config = {
        "format": FORMAT,
        "version": version,
        "model": model.config.to_dict(),
        "backbone_trained": model.backbone_trained,
        "metadata": metadata or {},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return version


def load(directory: str | Path, device: str | None = None) -> DualTowerWithFC:
    """Rebuild a model from an artifact directory, checking every tensor and the version."""
    directory = Path(directory)
    config_json = read_config(directory)
    try:
        config = ModelConfig.from_dict(config_json["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory / CONFIG_FILE}: bad model config: {exc}") from exc
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(weights_path)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{weights_path}: missing") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights_path}: corrupt safetensors file: {exc}") from exc

    model = DualTowerWithFC(config, device=device)
    model.backbone_trained = bool(config_json.get("backbone_trained", False))
    expected = _tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing tensors {missing[:5]}{'…' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(f"unexpected tensors {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
        if wrong_shape:
            problems.append(f"shape mismatch {wrong_shape[:5]}")
        raise ArtifactError(f"{weights_path} does not match {CONFIG_FILE}: {'; '.join(problems)}")

    for prefix, module in (("query_head.", model.query_head), ("doc_head.", model.doc_head)):
        module.load_state_dict(
            {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        )
    if model.backbone_trained:
        model.backbone.load_state_dict(
            {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
        )
    model.to(model.device_name)
    model.eval()

    actual = model_version(model)
    if config_json.get("version") != actual:
        raise ArtifactError(
            f"{weights_path}: content gives version {actual}, but {CONFIG_FILE} says "
            f"{config_json.get('version')!r} (weights changed or belong to another artifact)"
        )
    return model


def load_published(
    root: str | Path, version: str | None = None, device: str | None = None
) -> DualTowerWithFC:
    """Load `root/<version>` (default: the one LATEST points at)."""
    version = version or latest_version(root)
    if version is None:
        raise ArtifactError(f"{Path(root) / LATEST_FILE}: missing (nothing published under {root})")
    directory = Path(root) / version
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such published version")
    return load(directory, device=device)
