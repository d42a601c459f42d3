"""The torch engine: a `DualTowerWithFC` loaded from an artifact (or the untrained base model)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from twotower.artifacts import load, model_version
from twotower.config import ModelConfig
from twotower.engine import Engine
from twotower.model import DualTowerWithFC
from twotower.registry import find_version

log = logging.getLogger(__name__)


class TorchEncoder:
    engine: Engine = "torch"

    def __init__(self, model: DualTowerWithFC, version: str | None = None) -> None:
        self._model: DualTowerWithFC | None = model
        self.version = version or model_version(model)
        self.dim = model.config.embedding_dim
        self.max_seq_length = model.config.max_seq_length
        self.device = model.device_name
        # On a GPU: fp16 matmuls (autocast keeps norms and softmax in fp32; `make bench-gpu` checks
        # cosine >= 0.999 to fp32 CPU vectors) and batches big enough to fill the chip.
        self.half = self.device.startswith("cuda")
        self.batch_size = 256 if self.half else 64
        # Hugging Face fast tokenizers are not safe to call from several threads at once ("Already
        # borrowed"), and services call from a thread pool: one encode at a time per encoder.
        self._lock = threading.Lock()
        self._tokenizer: Tokenizer | None = None

    @classmethod
    def open(
        cls,
        roots: Sequence[str | Path],
        version: str | None,
        *,
        base_model: str | None = None,
        device: str | None = None,
        threads: int | None = None,
    ) -> TorchEncoder:
        if threads is not None:
            torch.set_num_threads(threads)
        if version is None:
            base = base_model or ModelConfig.base_model
            log.warning("no model version given: serving the untrained base model %s", base)
            return cls(DualTowerWithFC(ModelConfig(base_model=base), device=device))
        return cls(load(find_version(version, roots), device=device), version)

    @property
    def model(self) -> DualTowerWithFC:
        if self._model is None:
            raise RuntimeError(f"model version {self.version} has been released")
        return self._model

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = offsets_tokenizer(self.model)
        return self._tokenizer

    def _precision(self) -> AbstractContextManager[object]:
        return torch.autocast("cuda", dtype=torch.float16) if self.half else nullcontext()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock, self._precision():
            return self.model.encode_queries(texts, batch_size=self.batch_size)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock, self._precision():
            return self.model.encode_documents(texts, batch_size=self.batch_size)

    def close(self) -> None:
        with self._lock:
            self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def offsets_tokenizer(model: DualTowerWithFC) -> Tokenizer:
    """The backbone's Rust tokenizer without truncation or padding (for counting tokens and
    splitting passages), copied so that configuring it never touches the one the model encodes with."""
    tokenizer = Tokenizer.from_str(model.backbone.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
