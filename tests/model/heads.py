"""Test models whose heads are far from the identity, so that each tower's head shows in its vectors."""

from __future__ import annotations

import torch

from twotower import DualTowerWithFC


def with_moved_heads(seed: int, scale: float = 0.05) -> DualTowerWithFC:
    """The untrained model on CPU with random noise (seeded) added to both heads' parameters."""
    model = DualTowerWithFC(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (model.query_head, model.doc_head):
            for param in head.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model
