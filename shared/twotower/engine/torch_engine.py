"""The torch engine: a `DualTowerWithFC` loaded from an artifact (or the untrained base model)."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tokenizers import Tokenizer

from twotower.artifacts import load, model_version
from twotower.config import ModelConfig
from twotower.engine import Engine
from twotower.engine.batching import INPUTS, length_sorted_chunks, pack
from twotower.model import DualTowerWithFC, TowerHead, mean_pooled, offsets_tokenizer, unsupported_backbone
from twotower.registry import find_version

log = logging.getLogger(__name__)

# The (texts, tokens) shapes the query tower is captured at as CUDA graphs: a batch is padded up to
# the nearest (repeating rows, masking tokens); a bigger one runs eagerly.
GRAPH_BATCHES = (1, 2, 4, 8)
GRAPH_WIDTHS = (16, 32, 64, 128)
Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class TorchEncoder:
    engine: Engine = "torch"

    def __init__(
        self,
        model: DualTowerWithFC,
        version: str | None = None,
        *,
        direct: bool | None = None,
        graphs: bool | None = None,
    ) -> None:
        self._model: DualTowerWithFC | None = model
        self.version = version or model_version(model)
        self.dim = model.config.embedding_dim
        self.max_seq_length = model.config.max_seq_length
        self.device = model.device_name
        gpu = self.device.startswith("cuda")
        # On a GPU documents run in fp16 autocast (`make bench-gpu` checks the cosine to fp32); queries
        # stay fp32: one short text is launch-bound, and autocast's casts cost more than fp16 saves.
        self.half = gpu
        self.batch_size = 256 if gpu else 64
        # `direct` (default on a GPU): the Rust tokenizer feeds the tower here; ST's tokenizing is slow.
        self.direct = (gpu if direct is None else direct) and unsupported_backbone(model) is None
        if self.direct:
            self._encoding = offsets_tokenizer(model)  # a copy of its own, configured once here
            self._encoding.enable_truncation(self.max_seq_length)
            self._pad_id = int(model.backbone.tokenizer.pad_token_id or 0)
            self._inputs = [n for n in INPUTS if n in model.backbone.tokenizer.model_input_names]
        # `graphs`: queries replay CUDA graphs (captured per shape on first use), as a short query is
        # bound by launching kernels from Python. A capture that fails turns them off (logged).
        self.graphs = self.direct and gpu and (graphs is None or graphs)
        self._captured: dict[tuple[int, int], CapturedTower] = {}
        # Hugging Face fast tokenizers are not thread-safe ("Already borrowed"): one encode at a time.
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

    def _precision(self, half: bool) -> AbstractContextManager[object]:
        return torch.autocast("cuda", dtype=torch.float16) if half else nullcontext()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self.direct:
                return self._encode_direct(texts, self.model.query_head, half=False, graphs=True)
            return self.model.encode_queries(texts, batch_size=self.batch_size)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self.direct:
                return self._encode_direct(texts, self.model.doc_head, half=self.half)
            with self._precision(self.half):
                return self.model.encode_documents(texts, batch_size=self.batch_size)

    @property
    def captured_shapes(self) -> list[tuple[int, int]]:
        """The (batch, tokens) shapes the query tower has been captured at so far."""
        return sorted(self._captured)

    def _forward(self, head: TowerHead, half: bool) -> Forward:
        """One tower on padded inputs on the device, as `DualTowerWithFC.encode_*` computes it."""
        transformer = cast(torch.nn.Module, self.model.backbone[0].auto_model)

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            with self._precision(half):
                hidden = transformer(**inputs).last_hidden_state
            # Pooled in fp32 (the transformer's output is fp16 under autocast).
            return head(mean_pooled(hidden.float(), inputs["attention_mask"])).float()

        return forward

    @torch.inference_mode()
    def _encode_direct(
        self, texts: Sequence[str], head: TowerHead, half: bool, graphs: bool = False
    ) -> np.ndarray:
        """The tower run here on the Rust tokenizer's ids; with `graphs` (the query tower) via CUDA graphs."""
        self.model.eval()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        forward = self._forward(head, half)
        encodings = self._encoding.encode_batch(list(texts))
        for chunk in length_sorted_chunks(encodings, self.batch_size):
            shape = graph_shape(len(chunk), len(encodings[chunk[0]].ids)) if self.graphs and graphs else None
            if shape is not None:
                rows = np.resize(chunk, shape[0])  # the batch filled up with copies of its own rows
                feed = pack(encodings, rows, names=self._inputs, pad_id=self._pad_id, width=shape[1])
                vectors = self._replay(shape, forward, feed)
                if vectors is not None:
                    out[chunk] = vectors[: len(chunk)]
                    continue
            feed = pack(encodings, chunk, names=self._inputs, pad_id=self._pad_id)
            inputs = {name: torch.from_numpy(a).to(self.device) for name, a in feed.items()}
            out[chunk] = forward(inputs).cpu().numpy()
        return out

    def _replay(
        self, shape: tuple[int, int], forward: Forward, feed: dict[str, np.ndarray]
    ) -> np.ndarray | None:
        """`feed` through the graph of `shape`, captured if new; None if capturing failed (graphs off)."""
        captured = self._captured.get(shape)
        if captured is None:
            try:
                captured = self._captured[shape] = CapturedTower(forward, feed, self.device)
            except RuntimeError:
                log.warning(
                    "capturing the query tower as a CUDA graph failed: queries run eagerly", exc_info=True
                )
                self.graphs = False
                self._captured.clear()
                return None
        return captured(feed)

    def close(self) -> None:
        with self._lock:
            self._model = None
            self._captured.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def graph_shape(batch: int, tokens: int) -> tuple[int, int] | None:
    """The smallest graph shape holding `batch` texts of at most `tokens` tokens, or None."""
    rows = next((b for b in GRAPH_BATCHES if b >= batch), None)
    width = next((w for w in GRAPH_WIDTHS if w >= tokens), None)
    return None if rows is None or width is None else (rows, width)


class CapturedTower:
    """A tower's forward pass captured as a CUDA graph for one input shape, replayed on copied-in
    inputs; callers hold the encoder's lock, so one replay runs at a time."""

    def __init__(self, forward: Forward, example: dict[str, np.ndarray], device: str) -> None:
        self.inputs = {name: torch.from_numpy(a).to(device) for name, a in example.items()}
        # Warm up on a side stream first (kernel choices, workspaces), as torch.cuda.graphs asks.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                forward(self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: another encoder (a version being swapped in) may use the GPU meanwhile.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = forward(self.inputs)

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        for name, a in feed.items():
            self.inputs[name].copy_(torch.from_numpy(a))
        self.graph.replay()
        return cast(np.ndarray, self.output.cpu().numpy())
