"""Loading the model a service serves: a pinned or the LATEST published version, else the base."""

from __future__ import annotations

import logging
from pathlib import Path

from twotower import DualTowerWithFC, ModelConfig, latest_version, load_published, model_version

log = logging.getLogger(__name__)


def load_serving_model(
    weights_dir: Path, version: str | None, base_model: str, device: str | None = None
) -> tuple[DualTowerWithFC, str]:
    """The model to serve and its version.

    A pinned `version` must exist under `weights_dir`; with none pinned, `weights_dir/LATEST` is
    used; with nothing published yet, the untrained model on `base_model` (which ranks exactly
    like the base model) is served under its own content-derived version.
    """
    if version or latest_version(weights_dir):
        model = load_published(weights_dir, version, device=device)
    else:
        log.warning(
            "nothing published under %s: serving the untrained base model %s", weights_dir, base_model
        )
        model = DualTowerWithFC(ModelConfig(base_model=base_model), device=device)
    resolved = model_version(model)
    log.info("serving model version %s", resolved)
    return model, resolved
