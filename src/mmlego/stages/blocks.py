"""Train one LegoBlock per (modality, fold), predict with it alone, and cache its latents.

A block trains on every training patient that has its modality and early-stops on the
inner validation patients that have it. The latent cache holds the complex latent of every
patient of the cohort with the modality, the block's head and provenance, so LegoMerge
needs nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from mmlego import __version__
from mmlego.atomic import atomic_path
from mmlego.checkpoint import load_model, save_model
from mmlego.data import sha256_of
from mmlego.devices import pick_device
from mmlego.nn.bags import pad_bags
from mmlego.nn.block import LegoBlock
from mmlego.predictions import PredictionRecord, write_predictions
from mmlego.stages.inputs import ModalityData
from mmlego.survival import risk_score, survival_curve
from mmlego.training import TrainConfig, predict_logits, seed_everything, train_model

logger = logging.getLogger(__name__)


def build_block(data: ModalityData, block_options: Mapping[str, Any]) -> LegoBlock:
    """Build a LegoBlock for ``data``: an SNN encoder for tables, gated-attention MIL for bags."""
    options = dict(block_options)
    encoders = options.pop("encoders", {})
    kind = "bag" if data.is_bag else "table"
    encoder = encoders.get(kind, {"name": "gated_attention_mil" if data.is_bag else "snn"})
    encoder = dict(encoder)
    return LegoBlock(
        in_features=data.in_features,
        encoder=encoder.pop("name"),
        encoder_kwargs=encoder,
        n_outputs=len(data.inner_edges) + 1,
        **options,
    )


def train_block(
    data: ModalityData, *, fold: int, block_options: Mapping[str, Any], train_options: Mapping[str, Any]
) -> tuple[LegoBlock, dict]:
    """Train a block on the fold's training patients with the modality; return it and a summary."""
    train_rows, val_rows = data.rows("train"), data.rows("validation")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(
            f"modality {data.name!r} fold {fold}: {len(train_rows)} training and {len(val_rows)} "
            "validation patients have it; a block needs at least one of each"
        )
    options = dict(train_options)
    device = pick_device(options.pop("device", "auto"))
    config = TrainConfig(**{**options, "seed": int(options.get("seed", 0)) + fold})
    # The encoder's initial weights come from the global generator: seed it first, so a
    # rerun of the job gives the same block.
    seed_everything(config.seed)
    block = build_block(data, block_options)
    logger.info(
        "training %s block on fold %d: %d training, %d validation patients, %d parameters",
        data.name, fold, len(train_rows), len(val_rows), sum(p.numel() for p in block.parameters()),
    )
    # NOTE: the CUDA path (device "auto" on a GPU node) has not been run in CI.
    block.to(device)
    result = train_model(block, data.dataset(train_rows), data.dataset(val_rows), config=config, fold=fold)
    block.cpu()
    summary = {
        "modality": data.name,
        "fold": fold,
        "n_train": int(len(train_rows)),
        "n_validation": int(len(val_rows)),
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_score": result.best_score,
        "gradient_steps": result.gradient_steps,
        "seconds": result.seconds,
        "device": str(device),
        "history": result.history,
    }
    return block, summary


def save_block(block: LegoBlock, summary: dict, weights_path: str | Path, summary_path: str | Path) -> None:
    """Write ``fold_<k>.safetensors``, ``fold_<k>.json`` (hyper-parameters and input shapes)
    and the training summary.

    Both checkpoint files are written under temporary names first; the weights file, the
    rule's main output, is renamed last, so its presence means the checkpoint is complete.
    """
    weights_path = Path(weights_path)
    stem = weights_path.with_suffix("")
    tmp_weights, tmp_json = save_model(block, stem.with_name(f".{stem.name}.part"))
    with atomic_path(summary_path) as tmp_summary:
        tmp_summary.write_text(json.dumps(summary, indent=2) + "\n")
    tmp_json.replace(stem.with_name(stem.name + ".json"))
    tmp_weights.replace(weights_path)


def predict_with_block(block: nn.Module, data: ModalityData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return risk (P,) and survival curve (P, n_bins) of the given patient rows."""
    logits = predict_logits(block, data.dataset(rows))
    return risk_score(logits).numpy(), survival_curve(logits).numpy()


def write_block_predictions(block: LegoBlock, data: ModalityData, fold: int, path: str | Path, seconds: float) -> None:
    """Predictions of the block alone for the test patients that have its modality."""
    rows = data.rows("test")
    risk, curve = predict_with_block(block, data, rows)
    record = PredictionRecord(
        method=f"block_{data.name}", fold=fold, inner_edges=data.inner_edges.tolist(),
        gradient_steps=0, seconds=seconds, details={"note": "unimodal training only"},
    )
    write_predictions(path, data.case_ids[rows], risk, curve, record)


def encode_latents(block: LegoBlock, data: ModalityData, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return the case_ids and complex latents (P, n_latents, latent_dim) of patients with the modality."""
    rows = np.flatnonzero(data.present)
    block.eval()
    latents = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            if data.is_bag:
                x, mask = pad_bags([data.features[row] for row in chunk])
            else:
                x, mask = data.features[torch.as_tensor(chunk, dtype=torch.long)], None
            latents.append(block.encode(x, mask))
    z = torch.cat(latents).numpy() if latents else np.zeros((0, block.n_latents, block.latent_dim), np.complex64)
    return data.case_ids[rows], z


def write_latent_cache(
    path: str | Path, case_ids: np.ndarray, z: np.ndarray, block: LegoBlock, *, fold: int,
    modality: str, inner_edges: np.ndarray, block_path: str | Path,
) -> None:
    """Write ``latents`` (P, L, D complex64), ``case_id`` and the head's parameters to HDF5."""
    with atomic_path(path) as tmp_path, h5py.File(tmp_path, "w") as handle:
        handle.create_dataset("latents", data=z.astype(np.complex64))
        handle.create_dataset("case_id", data=np.asarray(case_ids, dtype="S"))
        head = handle.create_group("head")
        for name, tensor in block.head.state_dict().items():
            head.create_dataset(name, data=tensor.detach().numpy())
        handle.create_dataset("inner_edges", data=np.asarray(inner_edges, dtype=float))
        handle.attrs.update(
            {
                "modality": modality,
                "fold": fold,
                "n_latents": block.n_latents,
                "latent_dim": block.latent_dim,
                "n_outputs": block.n_outputs,
                "block_config": json.dumps(block.config, sort_keys=True),
                "block_weights_sha256": sha256_of(block_path),
                "mmlego_version": __version__,
            }
        )


def read_latent_cache(path: str | Path) -> dict[str, Any]:
    """Return case_ids, latents, head state dict, inner edges and attributes of a cache."""
    with h5py.File(path, "r") as handle:
        return {
            "case_ids": handle["case_id"][()].astype(str),
            "latents": torch.from_numpy(handle["latents"][()]),
            "head_state": {name: torch.from_numpy(handle["head"][name][()]) for name in handle["head"]},
            "inner_edges": handle["inner_edges"][()],
            "attrs": dict(handle.attrs),
        }


def load_block(weights_path: str | Path) -> LegoBlock:
    return load_model(Path(weights_path).with_suffix(""))
