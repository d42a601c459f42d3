"""Train the two towers on a BEIR train split and publish a new model version.

    python -m training.train --data ../shared/data/scifact --weights-dir weights     # full recipe
    python -m training.train ... --no-train-backbone --epochs 5                      # heads only, fast

The recipe, top to bottom:
  1. Carve a validation split (a seeded fraction of the *train* queries); test qrels are never read.
  2. Mine hard negatives with BM25: its top documents for each query, minus every known positive.
  3. Train with in-batch negatives + one hard negative per pair (MNRL / InfoNCE), or the triplet
     margin loss: backbone and heads, or (frozen) the heads only over cached backbone embeddings.
  4. Keep the epoch with the best validation nDCG@10 (over a pool of val positives + BM25's top).
  5. WiSE-FT: interpolate between the untrained and the fine-tuned weights (the backbone's all, the
     heads' output layers), keeping most of the gain and little of the forgetting of other domains.
     The ratio is fixed on principle (0.5), not tuned on any test set.
  6. Publish (config + safetensors, content-derived version, LATEST moved atomically) with the
     settings and metrics in the artifact's metadata; log to wandb (offline by default).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.data import batches, doc_text, make_pairs
from training.objectives import head_inner_layers, interpolate_, mnrl_loss, positive_mask, triplet_loss
from training.retrieval import top_k
from training.sources import load_data
from twotower import DualTowerWithFC, ModelConfig, publish, save
from twotower.metrics import evaluate_run

log = logging.getLogger("training.train")


@dataclass
class TrainConfig:
    # -- data -------------------------------------------------------------------------------
    data: str = "../shared/data/scifact"  # BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    split: str = "train"
    val_fraction: float = 0.1  # share of the train queries held out for model selection
    max_queries: int = 0  # use only this many train queries (0 = all); for smoke tests
    neg_depth: int = 10  # BM25 depth mined for hard negatives (known positives removed)
    val_depth: int = 5  # validation pool: val positives + BM25's top val_depth per val query
    # -- search feedback (training/feedback.py): --source feedback | both -------------------
    source: str = "qrels"  # qrels (the BEIR folder) | feedback (stored in Chroma) | both
    chroma_host: str = "localhost"  # where the query service stores feedback
    chroma_port: int = 8002
    collection_prefix: str = "docs"
    feedback_since: float = 0.0  # unix time: feedback stored earlier is not read
    feedback_until: float = 0.0  # unix time: feedback stored from then on is not read (0 = now)
    propensity_eta: float = 1.0  # examination model: P(examined at rank r) = (1/r)^eta
    max_weight: float = 2.0  # inverse-propensity weights are clipped here (variance, noise: feedback.py)
    min_clicks: int = 2  # a clicked result is a positive once this many searches of its query clicked it
    select: str = (
        "auto"  # which epoch to publish: val (best val nDCG@10) | last | auto (val for qrels, else last)
    )
    # -- model ------------------------------------------------------------------------------
    base_model: str = ModelConfig.base_model
    train_backbone: bool = True  # False: frozen backbone, cached embeddings, heads only
    max_seq_length: int = 128  # tokens per document while training (serving keeps the model's 256)
    # -- optimisation -----------------------------------------------------------------------
    loss: str = "mnrl"  # mnrl (in-batch + hard negatives) | triplet
    margin: float = 0.2  # triplet margin, on cosine similarity
    scale: float = 20.0  # mnrl: cosine similarities are multiplied by this (1 / temperature)
    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-5  # full fine-tune: backbone and heads
    frozen_lr: float = 1e-3  # heads only (frozen backbone)
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the steps with a linear warmup; then linear decay to 0
    seed: int = 0
    device: str = ""  # "" = cuda when available, else cpu
    # -- after training ---------------------------------------------------------------------
    wise_ratio: float = 0.5  # 1 = fine-tuned weights as they are, 0 = the untrained model
    weights_dir: str = "weights"
    publish: bool = True
    finetuned_dir: str = ""  # also save the fine-tuned weights before WiSE here ("" = don't)
    # -- logging ----------------------------------------------------------------------------
    wandb_mode: str = ""  # "" = $WANDB_MODE, else offline; online | offline | disabled
    wandb_project: str = "twotower"
    wandb_dir: str = "."  # wandb writes ./wandb/<run> (gitignored)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default)
    cfg = TrainConfig(**vars(parser.parse_args(argv)))
    if cfg.source not in ("qrels", "feedback", "both"):
        parser.error(f"--source must be qrels, feedback or both, not {cfg.source!r}")
    if cfg.select not in ("auto", "val", "last"):
        parser.error(f"--select must be auto, val or last, not {cfg.select!r}")
    if cfg.loss not in ("mnrl", "triplet"):
        parser.error(f"--loss must be mnrl or triplet, not {cfg.loss!r}")
    return cfg


def train(cfg: TrainConfig) -> dict[str, Any]:
    started = time.monotonic()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")

    data = load_data(cfg)
    corpus, queries, qrels = data.corpus, data.queries, data.known
    train_qrels, val_qrels, negatives, val_pool = (
        data.train_qrels,
        data.val_qrels,
        data.negatives,
        data.val_pool,
    )
    log.info("%d train / %d val queries, val pool %d docs", len(train_qrels), len(val_qrels), len(val_pool))

    # -- model ------------------------------------------------------------------------------
    model = DualTowerWithFC(ModelConfig(base_model=cfg.base_model), device=device)
    serve_len = model.backbone.max_seq_length
    model.backbone.max_seq_length = cfg.max_seq_length
    start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    doc_cache: dict[str, torch.Tensor] = {}
    query_cache: dict[str, torch.Tensor] = {}
    if cfg.train_backbone:
        params = list(model.parameters())
    else:
        model.backbone.requires_grad_(False)
        params = list(model.query_head.parameters()) + list(model.doc_head.parameters())
        # Frozen backbone: embed every text the run needs exactly once.
        needed_docs = sorted(
            {p.positive_id for p in make_pairs(train_qrels, negatives, 0)}
            | {d for pool in negatives.values() for d in pool}
            | set(val_pool)
        )
        needed_queries = sorted(set(train_qrels) | set(val_qrels))
        log.info("caching backbone embeddings of %d documents", len(needed_docs))
        doc_vectors = model.embed_backbone([doc_text(corpus[d]) for d in needed_docs], progress=True)
        doc_cache = dict(zip(needed_docs, doc_vectors, strict=True))
        query_vectors = model.embed_backbone([queries[q] for q in needed_queries])
        query_cache = dict(zip(needed_queries, query_vectors, strict=True))

    def embed(ids: list[str], texts_of: Any, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        if cfg.train_backbone:
            return model.backbone_forward([texts_of(i) for i in ids])
        return torch.stack([cache[i] for i in ids])

    @torch.no_grad()
    def validate() -> float:
        model.eval()
        vq = sorted(val_qrels)
        if cfg.train_backbone:
            d_emb = model.encode_documents([doc_text(corpus[d]) for d in val_pool])
            q_emb = model.encode_queries([queries[q] for q in vq])
        else:
            d_emb = model.document_tower(torch.stack([doc_cache[d] for d in val_pool])).cpu().numpy()
            q_emb = model.query_tower(torch.stack([query_cache[q] for q in vq])).cpu().numpy()
        run = dict(zip(vq, top_k(q_emb, d_emb, val_pool, 100), strict=True))
        return evaluate_run(run, val_qrels)["ndcg@10"]

    # -- wandb: offline unless asked --------------------------------------------------------
    import wandb

    mode = cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"wandb mode must be online, offline or disabled, not {mode!r}")
    run = wandb.init(
        project=cfg.wandb_project,
        dir=cfg.wandb_dir,
        mode=mode,  # type: ignore[arg-type]  # checked above
        config=dataclasses.asdict(cfg),
    )

    # -- training loop ----------------------------------------------------------------------
    lr = cfg.lr if cfg.train_backbone else cfg.frozen_lr
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(batches(make_pairs(train_qrels, negatives, 0), cfg.batch_size, cfg.seed, 0))
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = max(1, int(cfg.warmup * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup_steps, max(0.0, (total_steps - s) / (total_steps - warmup_steps + 1))),
    )
    base_val = best_val = validate()
    run.log({"val/ndcg@10": base_val, "epoch": 0}, step=0)
    log.info("epoch 0 (untrained): val nDCG@10 %.4f", base_val)
    best_state, best_epoch, step = copy.deepcopy(start_state), 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        epoch_batches = batches(
            make_pairs(train_qrels, negatives, epoch - 1, data.weights), cfg.batch_size, cfg.seed, epoch
        )
        bar = tqdm(epoch_batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch")
        for batch in bar:
            qids = [p.query_id for p in batch]
            dids = [p.positive_id for p in batch]
            # Hard negatives when every pair has one (qrels: BM25's); from feedback, where a click at
            # rank 1 has no skipped result above it, those of the pairs that have one (MNRL: each is
            # a negative of every query in the batch).
            if all(p.negative_id for p in batch) or (cfg.loss == "mnrl" and cfg.source != "qrels"):
                dids += [p.negative_id for p in batch if p.negative_id]
            weights = torch.tensor([p.weight for p in batch], device=device)
            q = model.query_tower(embed(qids, queries.__getitem__, query_cache))
            d = model.document_tower(embed(dids, lambda i: doc_text(corpus[i]), doc_cache))
            known = positive_mask(qids, dids, qrels)
            loss = (
                mnrl_loss(q, d, known, cfg.scale, weights)
                if cfg.loss == "mnrl"
                else triplet_loss(q, d, known, cfg.margin, weights)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
            run.log({"train/loss": loss.item(), "lr": schedule.get_last_lr()[0], "epoch": epoch}, step=step)
        val = validate()
        run.log({"val/ndcg@10": val, "epoch": epoch}, step=step)
        log.info("epoch %d: val nDCG@10 %.4f (best %.4f)", epoch, val, best_val)
        if val > best_val:
            best_val, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # Validation on feedback labels favours the ranking that was shown when the clicks were made
    # (its top results got the clicks): it is logged, but a feedback run publishes its last epoch.
    if (cfg.select == "auto" and cfg.source != "qrels") or cfg.select == "last":
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_val, best_epoch = val, cfg.epochs

    # -- WiSE-FT between the untrained and the best fine-tuned weights ----------------------
    model.load_state_dict(best_state)
    if cfg.finetuned_dir:
        model.backbone_trained = cfg.train_backbone
        save(model, cfg.finetuned_dir, metadata={"training": dataclasses.asdict(cfg), "wise_ratio": 1.0})
    interpolate_(model, start_state, cfg.wise_ratio, keep_tuned=head_inner_layers(model))
    final_val = validate()
    run.log({"val/ndcg@10_wise": final_val}, step=step)
    model.backbone.max_seq_length = serve_len
    model.backbone_trained = cfg.train_backbone and best_epoch > 0 and cfg.wise_ratio > 0
    model.eval()

    metrics = {
        "val_ndcg@10_untrained": base_val,
        "val_ndcg@10_finetuned": best_val,
        "val_ndcg@10_published": final_val,
        "best_epoch": best_epoch,
        "train_queries": len(train_qrels),
        "val_queries": len(val_qrels),
        "seconds": round(time.monotonic() - started, 1),
    }
    version = None
    if cfg.publish:
        run_path = f"{run.entity}/{run.project}/{run.id}" if mode == "online" else str(Path(run.dir).parent)
        version = publish(
            model,
            cfg.weights_dir,
            metadata={
                "training": dataclasses.asdict(cfg),
                "metrics": metrics,
                "wandb_run": run_path,
            },
        )
        run.summary["published_version"] = version
        artifact = wandb.Artifact(
            f"twotower-{version}", type="model", metadata={"version": version, **metrics}
        )
        artifact.add_reference(Path(cfg.weights_dir, version).resolve().as_uri(), checksum=False)
        run.log_artifact(artifact)
    run.summary.update(metrics)
    run.finish()
    return {"version": version, "wandb_dir": str(run.dir), "metrics": metrics, "model": model}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = parse_args(argv)
    result = train(cfg)
    m = result["metrics"]
    print(
        f"trained {'backbone+heads' if cfg.train_backbone else 'heads (frozen backbone)'} "
        f"{cfg.epochs} epochs ({cfg.loss}) in {m['seconds']:.0f}s: val nDCG@10 {m['val_ndcg@10_untrained']:.4f} "
        f"-> {m['val_ndcg@10_finetuned']:.4f} (epoch {m['best_epoch']}) -> {m['val_ndcg@10_published']:.4f} "
        f"after WiSE {cfg.wise_ratio}; published {result['version'] or '(not published)'} to {cfg.weights_dir}"
    )


if __name__ == "__main__":
    main()
