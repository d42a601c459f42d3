"""Losses and weight-space interpolation (WiSE-FT) for the two towers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def positive_mask(
    query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Mapping[str, Mapping[str, int]]
) -> torch.Tensor:
    """True where document j is a known positive of query i: never use it as a negative."""
    return torch.tensor(
        [[qrels.get(q, {}).get(d, 0) > 0 for d in doc_ids] for q in query_ids], dtype=torch.bool
    )


def _mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Per-pair losses averaged, each pair counting `weights[i]` times (None: once)."""
    return losses.mean() if weights is None else (losses * weights.to(losses.device)).mean()


def mnrl_loss(
    q: torch.Tensor,
    d: torch.Tensor,
    known_positive: torch.Tensor,
    scale: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiple-negatives ranking (InfoNCE): query i's positive is document i; every other
    document in the batch (other positives and all hard negatives) is a negative, except known
    positives of query i, which are masked out. `weights`: each pair's weight (mean 1 overall)."""
    scores = scale * q @ d.T
    n = q.shape[0]
    mask = known_positive.clone()
    mask[torch.arange(n), torch.arange(n)] = False
    scores = scores.masked_fill(mask.to(scores.device), float("-inf"))
    return _mean(F.cross_entropy(scores, torch.arange(n, device=scores.device), reduction="none"), weights)


def triplet_loss(
    q: torch.Tensor,
    d: torch.Tensor,
    known_positive: torch.Tensor,
    margin: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triplet margin loss on cosine similarity: max(0, margin - cos(q, p) + cos(q, n)).

    The negative is the mined hard negative (document n + i) when there is one, else the most
    similar in-batch document that is not a known positive."""
    n = q.shape[0]
    sims = q @ d.T
    pos = sims[torch.arange(n), torch.arange(n)]
    if d.shape[0] >= 2 * n:
        neg = sims[torch.arange(n), torch.arange(n, 2 * n)]
    else:
        neg = (
            sims.masked_fill(
                known_positive.to(sims.device)
                | torch.eye(n, d.shape[0], dtype=torch.bool, device=sims.device),
                float("-inf"),
            )
            .max(dim=1)
            .values
        )
    return _mean(F.relu(margin - pos + neg), weights)


@torch.no_grad()
def interpolate_(
    module: torch.nn.Module,
    start: Mapping[str, torch.Tensor],
    ratio: float,
    keep_tuned: tuple[str, ...] = (),
) -> None:
    """WiSE-FT in place: every floating-point tensor becomes (1 - ratio) * start + ratio * current,
    except those whose name starts with one of `keep_tuned` (they keep their fine-tuned value).

    ratio 1 keeps the fine-tuned weights, ratio 0 restores the starting (untrained) model."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not name.startswith(keep_tuned):
            tensor.copy_(torch.lerp(start[name].to(tensor.device, tensor.dtype), tensor, ratio))


def head_inner_layers(model: torch.nn.Module) -> tuple[str, ...]:
    """The residual heads' layers before their zero-initialised output layer `fc3`.

    An untrained head is the identity whatever these hold (fc3 = 0), so WiSE-FT need not pull them
    back to their random initialisation: interpolating only fc3 moves each head's output linearly
    from the identity (ratio 0) to the fine-tuned head (ratio 1), the same two end points. Pulling
    fc1/fc2 towards random weights as well would scramble the features fc3 learned to read.
    """
    return tuple(
        f"{head}.{layer}."
        for head in ("query_head", "doc_head")
        for layer in ("norm", "fc1", "fc2")
        if hasattr(getattr(model, head, None), layer)
    )
