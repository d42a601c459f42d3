"""Micro-batching of concurrent queries (services/query/batching.py), on a recording encoder: the
mechanism is what is tested here; the real model's vectors are covered by tests/model."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from tokenizers import Tokenizer

from services.query.batching import BatchingEncoder


class SlowEncoder:
    """Encodes text i as a vector holding hash(text); each call takes `delay` seconds."""

    engine = "torch"
    version = "v-test"
    dim = 4
    max_seq_length = 8
    batch_size = 64

    def __init__(self, delay: float = 0.02, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    @property
    def tokenizer(self) -> Tokenizer:
        raise NotImplementedError

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.delay)
        if self.fail_on in texts:
            raise ValueError(f"cannot encode {self.fail_on!r}")
        return np.array([[len(t), hash(t) % 1000, 0, 1] for t in texts], dtype=np.float32)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_queries(texts)

    def close(self) -> None:
        pass


def run_concurrently(batcher: BatchingEncoder, texts: list[str]) -> dict[str, np.ndarray | BaseException]:
    results: dict[str, np.ndarray | BaseException] = {}
    start = threading.Barrier(len(texts))

    def work(text: str) -> None:
        start.wait(timeout=10)
        try:
            results[text] = batcher.encode_queries([text])[0]
        except Exception as exc:
            results[text] = exc

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_queries_share_batches_and_each_gets_its_own_vector() -> None:
    inner = SlowEncoder()
    batcher = BatchingEncoder(inner, max_batch=32)
    texts = [f"query {i} " + "x" * i for i in range(16)]
    results = run_concurrently(batcher, texts)
    batches = list(inner.calls)
    for text in texts:
        np.testing.assert_array_equal(results[text], inner.encode_queries([text])[0])
    assert sorted(t for b in batches for t in b) == sorted(texts)
    # 16 queries arriving together while the first is being encoded: far fewer forward passes.
    assert len(batches) <= 4 and max(len(b) for b in batches) > 1


def test_a_lone_query_is_encoded_at_once() -> None:
    inner = SlowEncoder(delay=0.0)
    batcher = BatchingEncoder(inner)
    started = time.perf_counter()
    batcher.encode_queries(["alone"])
    assert time.perf_counter() - started < 0.05  # no collection window to wait out
    assert inner.calls == [["alone"]]


def test_batches_are_capped() -> None:
    inner = SlowEncoder()
    results = run_concurrently(BatchingEncoder(inner, max_batch=3), [f"q{i}" for i in range(10)])
    assert len(results) == 10 and all(isinstance(v, np.ndarray) for v in results.values())
    assert max(len(b) for b in inner.calls) <= 3


def test_an_encoder_error_reaches_every_query_of_its_batch_and_only_those() -> None:
    inner = SlowEncoder(fail_on="bad")
    batcher = BatchingEncoder(inner)
    results = run_concurrently(batcher, ["bad", *(f"good {i}" for i in range(7))])
    failed_batch = next(b for b in inner.calls if "bad" in b)
    for text, result in results.items():
        if text in failed_batch:
            assert isinstance(result, ValueError) and "bad" in str(result)
        else:
            assert isinstance(result, np.ndarray)
    # The batcher is still usable afterwards.
    assert batcher.encode_queries(["after"]).shape == (1, 4)


def test_several_queries_in_one_call_and_documents_pass_straight_through() -> None:
    inner = SlowEncoder(delay=0.0)
    batcher = BatchingEncoder(inner)
    assert batcher.encode_queries(["a", "b"]).shape == (2, 4)
    assert batcher.encode_documents(["doc"]).shape == (1, 4)
    assert inner.calls == [["a", "b"], ["doc"]]
    assert batcher.version == "v-test" and batcher.batches == 0


@pytest.mark.parametrize("micro_batch", [True, False])
def test_the_query_service_wraps_its_encoders_as_configured(micro_batch: bool) -> None:
    from services.query.batching import query_batching
    from services.query.config import Settings

    wrap = query_batching(Settings(micro_batch=micro_batch, micro_batch_max=7))
    if not micro_batch:
        assert wrap is None
        return
    assert wrap is not None
    wrapped = wrap(SlowEncoder())
    assert isinstance(wrapped, BatchingEncoder) and wrapped.max_batch == 7


def test_an_encoder_that_runs_one_text_per_pass_is_not_batched() -> None:
    """onnx int8 runs one text per forward pass: a batch would only queue concurrent queries behind
    one thread, so the service serves such an encoder unwrapped, even with batching turned on."""
    from services.query.batching import query_batching
    from services.query.config import Settings

    wrap = query_batching(Settings(micro_batch=True))
    assert wrap is not None
    one_at_a_time = SlowEncoder()
    one_at_a_time.batch_size = 1
    assert wrap(one_at_a_time) is one_at_a_time
    assert isinstance(wrap(SlowEncoder()), BatchingEncoder)


def test_by_default_only_the_torch_engine_is_batched() -> None:
    from services.query.batching import query_batching
    from services.query.config import Settings

    wrap = query_batching(Settings())
    assert wrap is not None
    torch_encoder, onnx_encoder = SlowEncoder(), SlowEncoder()
    onnx_encoder.engine = "onnx"
    assert isinstance(wrap(torch_encoder), BatchingEncoder)
    assert wrap(onnx_encoder) is onnx_encoder
