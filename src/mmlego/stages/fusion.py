"""Multimodal models of one fold: LegoMerge from latent caches, and LegoFuse fine-tuning.

LegoMerge reads only the latent caches and the heads stored in them: no block is run and
no gradient step is taken. LegoFuse starts from the unimodal blocks and the merged head
and fine-tunes for a small, configured number of epochs on the training patients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmlego.devices import pick_device
from mmlego.nn.fuse import LegoFuse
from mmlego.nn.merge import merge_heads, merge_latents
from mmlego.predictions import PredictionRecord, write_predictions
from mmlego.stages.blocks import load_block, read_latent_cache
from mmlego.stages.inputs import ModalityData, multimodal_dataset
from mmlego.survival import risk_score, survival_curve
from mmlego.training import TrainConfig, predict_logits, train_model

logger = logging.getLogger(__name__)


def _head_from_state(state: Mapping[str, torch.Tensor], latent_dim: int, n_outputs: int) -> nn.Module:
    head = nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, n_outputs))
    head.load_state_dict(dict(state))
    return head


def legomerge_predict(
    cache_paths: Mapping[str, str | Path],
    case_ids: Sequence[str],
    *,
    method: str = "harmonic",
    head_merge: str = "slerp",
    weights: Mapping[str, float] | None = None,
    eps: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the cached latents of ``case_ids`` over the modalities each patient has.

    Returns risk (P,), survival curve (P, n_bins) and presence (P, K) in the order of
    ``cache_paths``. A patient without any modality gets NaN predictions.
    """
    modalities = list(cache_paths)
    caches = {name: read_latent_cache(path) for name, path in cache_paths.items()}
    first = caches[modalities[0]]
    n_latents, latent_dim = first["latents"].shape[1:]
    n_outputs = int(first["attrs"]["n_outputs"])
    for name, cache in caches.items():
        if not np.allclose(cache["inner_edges"], first["inner_edges"]):
            raise ValueError(
                f"latent caches of {modalities[0]!r} and {name!r} use different survival bins; "
                "they must come from the same fold"
            )

    count = len(case_ids)
    stacked = torch.zeros((count, len(modalities), n_latents, latent_dim), dtype=torch.complex64)
    presence = torch.zeros((count, len(modalities)), dtype=torch.bool)
    for index, name in enumerate(modalities):
        position = {case: row for row, case in enumerate(caches[name]["case_ids"])}
        for row, case in enumerate(case_ids):
            if case in position:
                stacked[row, index] = caches[name]["latents"][position[case]]
                presence[row, index] = True

    weight_list = [float((weights or {}).get(name, 1.0)) for name in modalities]
    heads = [_head_from_state(caches[name]["head_state"], latent_dim, n_outputs) for name in modalities]
    with torch.inference_mode():
        head = merge_heads(heads, weight_list, method=head_merge)
        merged = merge_latents(stacked, presence, torch.tensor(weight_list), method=method, eps=eps)
        logits = head(merged.real.mean(dim=1))  # (P, n_bins)
        risk, curve = risk_score(logits).numpy(), survival_curve(logits).numpy()
    none_present = ~presence.any(dim=1).numpy()
    risk[none_present], curve[none_present] = np.nan, np.nan
    return risk, curve, presence.numpy()


def run_legomerge(
    cache_paths: Mapping[str, str | Path], test_ids: Sequence[str], fold: int, output: str | Path,
    merge_options: Mapping[str, Any],
) -> None:
    """Predict the fold's test patients with LegoMerge and write predictions (0 gradient steps)."""
    started = time.perf_counter()
    risk, curve, presence = legomerge_predict(cache_paths, test_ids, **merge_options)
    keep = np.isfinite(risk)
    if not keep.all():
        logger.warning("legomerge fold %d: %d test patients have no modality and are left out", fold, (~keep).sum())
    edges = read_latent_cache(next(iter(cache_paths.values())))["inner_edges"]
    record = PredictionRecord(
        method="legomerge", fold=fold, inner_edges=np.asarray(edges).tolist(), gradient_steps=0,
        seconds=time.perf_counter() - started,
        details={
            **dict(merge_options),
            "modalities": list(cache_paths),
            "patients_per_modality": presence[keep].sum(axis=0).tolist(),
        },
    )
    write_predictions(output, np.asarray(test_ids)[keep], risk[keep], curve[keep], record)
    logger.info("legomerge fold %d: %d test patients predicted with 0 gradient steps", fold, keep.sum())


def run_legofuse(
    block_paths: Mapping[str, str | Path], datas: Sequence[ModalityData], fold: int, output: str | Path,
    fuse_options: Mapping[str, Any], train_options: Mapping[str, Any],
) -> dict:
    """Fine-tune LegoFuse from the unimodal blocks and predict the fold's test patients."""
    started = time.perf_counter()
    options = dict(fuse_options)
    epochs = int(options.pop("epochs"))
    patience = options.pop("patience", None)
    learning_rate = float(options.pop("lr"))
    blocks = {name: load_block(path) for name, path in block_paths.items()}
    weights = [float(options.pop("weights", {}).get(name, 1.0)) for name in blocks]
    model = LegoFuse(blocks=blocks, head_weights=weights, **options)

    reference = datas[0]
    has_any = np.stack([data.present for data in datas], axis=1).any(axis=1)
    train_rows = np.flatnonzero((reference.split == "train") & has_any)
    val_rows = np.flatnonzero((reference.split == "validation") & has_any)
    test_rows = np.flatnonzero((reference.split == "test") & has_any)
    train_options = dict(train_options)
    device = pick_device(train_options.pop("device", "auto"))
    config = TrainConfig(
        **{
            **train_options,
            "lr": learning_rate,
            "max_epochs": epochs,
            "patience": epochs if patience is None else int(patience),
            "seed": int(train_options.get("seed", 0)) + fold,
        }
    )
    model.to(device)
    result = train_model(
        model, multimodal_dataset(datas, train_rows), multimodal_dataset(datas, val_rows),
        config=config, fold=fold,
    )
    logits = predict_logits(model, multimodal_dataset(datas, test_rows))
    record = PredictionRecord(
        method="legofuse", fold=fold, inner_edges=reference.inner_edges.tolist(),
        gradient_steps=result.gradient_steps, seconds=time.perf_counter() - started,
        details={
            **dict(fuse_options),
            "best_epoch": result.best_epoch,
            "monitor": result.monitor,
            "history": result.history,
        },
    )
    write_predictions(
        output, reference.case_ids[test_rows], risk_score(logits).numpy(), survival_curve(logits).numpy(), record
    )
    return {"gradient_steps": result.gradient_steps, "best_epoch": result.best_epoch}
