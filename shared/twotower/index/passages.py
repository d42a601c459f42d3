"""Long documents as overlapping passages, counted in the backbone's own tokens.

The backbone sees at most `max_seq_length` tokens (two of them [CLS] and [SEP]). A document whose
tower input (title and text) fits stays one passage; a longer one is split into windows of `tokens`
tokens that overlap by `overlap`, each embedded with the title in front, so its tail is searchable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Encoding, Tokenizer

SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
MIN_PASSAGE_TOKENS = 32


@dataclass(frozen=True)
class PassageConfig:
    tokens: int = 200  # tokens per passage (title excluded)
    overlap: int = 48  # tokens shared by consecutive passages

    def __post_init__(self) -> None:
        if self.tokens < MIN_PASSAGE_TOKENS or not 0 <= self.overlap < self.tokens // 2:
            raise ValueError(
                f"passages need at least {MIN_PASSAGE_TOKENS} tokens and an overlap under half of them "
                f"(got {self.tokens} tokens, overlap {self.overlap})"
            )


def split(
    text: str, title: str | None, tokenizer: Tokenizer, window: int, config: PassageConfig
) -> list[tuple[int, int]]:
    """Character spans (start, end) of `text`'s passages: [(0, len(text))] when the document fits
    the window, else overlapping token windows that start and end on word boundaries."""
    return split_many([(text, title)], tokenizer, window, config)[0]


def split_many(
    documents: Sequence[tuple[str, str | None]], tokenizer: Tokenizer, window: int, config: PassageConfig
) -> list[list[tuple[int, int]]]:
    """`split` of each (text, title): the texts and titles tokenised in one batch (the tokenizer
    spreads a batch over its threads)."""
    texts = tokenizer.encode_batch([t for t, _ in documents], add_special_tokens=False)
    titled = [title for _, title in documents if title]
    lengths = iter(len(e.ids) for e in tokenizer.encode_batch(titled, add_special_tokens=False))
    return [
        _spans(text, encoding, next(lengths) if title else 0, window, config)
        for (text, title), encoding in zip(documents, texts, strict=True)
    ]


def _spans(
    text: str, encoding: Encoding, title_tokens: int, window: int, config: PassageConfig
) -> list[tuple[int, int]]:
    n = len(encoding.ids)
    room = window - SPECIAL_TOKENS - title_tokens
    if n <= room:
        return [(0, len(text))]
    # A long title leaves less room for text; never fewer than MIN_PASSAGE_TOKENS.
    size = max(MIN_PASSAGE_TOKENS, min(config.tokens, room))
    words, offsets = encoding.word_ids, encoding.offsets

    def inside_word(i: int) -> bool:  # token i continues the word of token i - 1
        return 0 < i < n and words[i] is not None and words[i] == words[i - 1]

    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + size, n)
        while end < n and end - 1 > start and inside_word(end):
            end -= 1  # end on a word boundary
        spans.append((offsets[start][0], offsets[end - 1][1]))
        if end >= n:
            return spans
        following = max(start + 1, end - config.overlap)
        while following > start + 1 and inside_word(following):
            following -= 1  # start on a word boundary
        start = following
