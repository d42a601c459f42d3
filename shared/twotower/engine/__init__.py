"""The two towers as a service runs them: an `Encoder` per model version, on one of two engines.

    torch  the model itself (`DualTowerWithFC`), on CPU or GPU; needs PyTorch
    onnx   each tower exported as one ONNX graph at publish time, run by ONNX Runtime (or, for
           the fp32 graphs on CPU, OpenVINO: `backend`) with the Rust `tokenizers`; needs neither
           PyTorch nor transformers

Services, ingestion and the backfill only ever call `encode_queries` / `encode_documents` (and read
`tokenizer` to split long documents into passages); nothing outside this package reaches inside
the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from tokenizers import Tokenizer

Engine = Literal["torch", "onnx"]
Tower = Literal["query", "document"]
TOWERS: tuple[Tower, ...] = ("query", "document")


@runtime_checkable
class Encoder(Protocol):
    """One model version's two towers. Thread-safe: services call it from several threads."""

    engine: Engine
    version: str
    dim: int
    max_seq_length: int  # tokens the backbone sees per text; longer texts are truncated
    batch_size: int  # most texts in one forward pass (1: one text per pass, e.g. onnx int8)

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
    threads: int | None = None,
    towers: Sequence[Tower] = TOWERS,
    variant: Literal["fp32", "int8", "auto"] = "auto",
    backend: Literal["onnxruntime", "openvino", "auto"] = "auto",
) -> Encoder:
    """The encoder of `version`, looked up in `roots` (the weights volume first, then model
    directories baked into an image). With no version, the untrained base model (torch only).

    `threads`: intra-op threads (torch: the process-wide count; onnx: per session); unset = the
    library's default. `towers`: those loaded now (onnx loads the others on first use; torch always
    holds both, they share the backbone). `variant`: onnx only, fp32 or int8 graphs (exported
    with `--int8`); a GPU, or a version exported without int8 graphs, runs fp32. `backend`: onnx
    only, the runtime of the fp32 graphs on CPU (int8 ones and a GPU always run on onnxruntime).
    `auto` (either): chosen for this CPU and the towers loaded now by `twotower.engine.cpu`."""
    if engine == "torch":
        from twotower.engine.torch_engine import TorchEncoder

        return TorchEncoder.open(roots, version, base_model=base_model, device=device, threads=threads)
    if engine == "onnx":
        from twotower.engine.cpu import announce, choose
        from twotower.engine.onnx_engine import OnnxEncoder

        choice = choose(towers, variant, backend, threads or available_cpus())
        encoder = OnnxEncoder.open(
            roots,
            version,
            device=device,
            threads=threads,
            towers=towers,
            variant=choice.variant,
            backend=choice.backend,
        )
        if encoder.device == "cpu":  # what runs: a version without int8 graphs serves fp32
            announce(replace(choice, variant=encoder.variant, backend=encoder.backend))
        return encoder
    raise ValueError(f"unknown engine {engine!r}: choose torch or onnx")


def find_published(roots: Sequence[str | Path]) -> str | None:
    """The version `LATEST` names in the first root that has one (weights volume, then image)."""
    from twotower.registry import latest_version

    for root in roots:
        version = latest_version(root)
        if version is not None:
            return version
    return None


def available_cpus() -> int:
    """The CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
