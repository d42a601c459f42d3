"""The two towers as a service runs them: an `Encoder` per model version, on one of two engines.

    torch  the model itself (`DualTowerWithFC`), on CPU or GPU; needs PyTorch
    onnx   each tower exported as one ONNX graph at publish time, run by ONNX Runtime with the
           Rust `tokenizers`; needs neither PyTorch nor transformers

Services, ingestion and the backfill only ever call `encode_queries` / `encode_documents` (and read
`tokenizer` to split long documents into passages); nothing outside this package reaches inside
the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from tokenizers import Tokenizer

Engine = Literal["torch", "onnx"]


@runtime_checkable
class Encoder(Protocol):
    """One model version's two towers. Thread-safe: services call it from several threads."""

    engine: Engine
    version: str
    dim: int
    max_seq_length: int  # tokens the backbone sees per text; longer texts are truncated

    @property
    def tokenizer(self) -> Tokenizer:
        """The backbone's tokenizer (no truncation, no padding): for counting tokens and splitting
        long documents into passages by token offsets."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query tower: texts -> float32 (n, dim), unit length."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Document tower: texts -> float32 (n, dim), unit length."""
        ...

    def close(self) -> None:
        """Release the model's memory (the service swapped to another version or is stopping)."""
        ...


def open_encoder(
    roots: Sequence[str | Path],
    version: str | None,
    *,
    engine: Engine = "torch",
    base_model: str | None = None,
    device: str | None = None,
) -> Encoder:
    """The encoder of `version`, looked up in `roots` (the weights volume first, then model
    directories baked into an image). With no version, the untrained base model (torch only)."""
    if engine == "torch":
        from twotower.engine.torch_engine import TorchEncoder

        return TorchEncoder.open(roots, version, base_model=base_model, device=device)
    raise ValueError(f"unknown engine {engine!r}: choose torch or onnx")
