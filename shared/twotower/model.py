"""`DualTowerWithFC`: one shared sentence-transformer backbone and two residual FC heads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from torch import nn

from twotower.backbone import default_device, load_backbone
from twotower.config import ModelConfig


class TowerHead(nn.Module):
    """Three fully connected layers with ReLU and dropout on a pre-normalised residual branch.

    out = normalize(x + fc3(drop(relu(fc2(drop(relu(fc1(layernorm(x)))))))))

    `fc3` starts at zero, so an untrained head is the identity on the unit-length backbone
    embedding: an untrained model ranks exactly like its base model.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim, hidden = config.embedding_dim, config.hidden_dim
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(config.dropout)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.fc1(self.norm(x))))
        h = self.dropout(F.relu(self.fc2(h)))
        return F.normalize(x + self.fc3(h), dim=-1)


class DualTowerWithFC(nn.Module):
    """Query tower = backbone + query head; document tower = backbone + document head."""

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        backbone: SentenceTransformer | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.device_name = device or default_device()
        self.backbone = backbone or load_backbone(
            self.config.base_model, self.config.max_seq_length, self.device_name
        )
        # Seeded so that an untrained model (and so its content-derived version) is reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.init_seed)
            self.query_head = TowerHead(self.config)
            self.doc_head = TowerHead(self.config)
        # Whether the backbone's weights differ from the base model's (then they are saved too).
        self.backbone_trained = False
        self.to(self.device_name)
        self.eval()

    # -- training-facing pieces -------------------------------------------------------------
    def backbone_forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length backbone embeddings with gradients (for fine-tuning the backbone)."""
        features = self.backbone.preprocess(list(texts))
        # sentence-transformers 6 also puts non-tensor entries (e.g. "modality") in the features.
        features = {
            k: v.to(self.device_name) if isinstance(v, torch.Tensor) else v for k, v in features.items()
        }
        return F.normalize(self.backbone(features)["sentence_embedding"], dim=-1)

    @torch.inference_mode()
    def embed_backbone(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> torch.Tensor:
        """Unit-length backbone embeddings, no gradients (also the base model's own embedding)."""
        self.eval()
        emb = self.backbone.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        )
        return emb.to(self.device_name).float()

    def query_tower(self, backbone_embeddings: torch.Tensor) -> torch.Tensor:
        return self.query_head(backbone_embeddings)

    def document_tower(self, backbone_embeddings: torch.Tensor) -> torch.Tensor:
        return self.doc_head(backbone_embeddings)

    # -- the two public towers --------------------------------------------------------------
    @torch.inference_mode()
    def encode_queries(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Query tower: texts -> float32 array (n, embedding_dim), unit length."""
        return self._encode(texts, self.query_head, batch_size, progress)

    @torch.inference_mode()
    def encode_documents(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Document tower: texts -> float32 array (n, embedding_dim), unit length."""
        return self._encode(texts, self.doc_head, batch_size, progress)

    def _encode(self, texts: Sequence[str], head: TowerHead, batch_size: int, progress: bool) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.config.embedding_dim), dtype=np.float32)
        self.eval()
        out = head(self.embed_backbone(texts, batch_size=batch_size, progress=progress))
        return out.float().cpu().numpy()


def unsupported_backbone(model: DualTowerWithFC) -> str | None:
    """None for a transformer + mean pooling (+ Normalize) backbone, the one run by hand; else what it is."""
    modules = [type(m).__name__ for m in model.backbone]
    pooling = getattr(model.backbone[1], "pooling_mode", None) if len(modules) > 1 else None
    if modules[:2] == ["Transformer", "Pooling"] and pooling == "mean" and modules[2:] in ([], ["Normalize"]):
        return None
    return f"{modules} (pooling {pooling})"


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The backbone's Pooling and Normalize: the mean over unpadded positions, at unit length."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9), dim=-1)


def offsets_tokenizer(model: DualTowerWithFC) -> Tokenizer:
    """A copy of the backbone's Rust tokenizer without truncation or padding (for counting tokens)."""
    tokenizer = Tokenizer.from_str(model.backbone.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
