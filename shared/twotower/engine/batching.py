"""Tokenized texts packed into padded batches, longest first: what both engines feed their models.

The Rust `tokenizers` encode a whole request in parallel and release the GIL; the batches are
plain int64 arrays (ONNX Runtime takes them as they are, the torch engine moves them to its device).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from tokenizers import Encoding

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_sorted_chunks(encodings: Sequence[Encoding], size: int) -> list[np.ndarray]:
    """Indices into `encodings`, longest text first, in chunks of `size`: a chunk pads little."""
    order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def pack(
    encodings: Sequence[Encoding],
    chunk: np.ndarray,
    *,
    names: Collection[str] = INPUTS,
    pad_id: int = 0,
    width: int | None = None,
) -> dict[str, np.ndarray]:
    """The rows `chunk` of `encodings` (longest first) as int64 arrays of shape (len(chunk), width),
    padded with `pad_id` (ids) and 0 (mask, token types); `width` defaults to the longest row."""
    width = width or len(encodings[chunk[0]].ids)
    feed = {
        name: np.full((len(chunk), width), pad_id if name == "input_ids" else 0, np.int64)
        for name in INPUTS
        if name in names
    }
    for row, i in enumerate(chunk):
        e = encodings[i]
        n = len(e.ids)
        feed["input_ids"][row, :n] = e.ids
        if "attention_mask" in feed:
            feed["attention_mask"][row, :n] = e.attention_mask
        if "token_type_ids" in feed:
            feed["token_type_ids"][row, :n] = e.type_ids
    return feed
