"""Baselines of one fold, on the same patients, folds and preprocessing as MM-Lego."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmlego.baselines import EarlyFusionNet, coxnet_predict, fit_coxnet, late_fusion
from mmlego.devices import pick_device
from mmlego.predictions import PredictionRecord, read_predictions, survival_columns, write_predictions
from mmlego.stages.inputs import ModalityData, concatenated_features
from mmlego.survival import risk_score, survival_curve
from mmlego.training import SurvivalDataset, TrainConfig, predict_logits, train_model

logger = logging.getLogger(__name__)


def _standardised(datas: Sequence[ModalityData]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated features standardised with training-patient statistics, and the split."""
    reference = datas[0]
    has_any = np.stack([data.present for data in datas], axis=1).any(axis=1)
    x = concatenated_features(datas)
    train = (reference.split == "train") & has_any
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std < 1e-8] = 1.0  # a constant training column stays constant instead of dividing by zero
    return (x - mean) / std, reference.split, has_any


def run_coxnet(
    datas: Sequence[ModalityData], fold: int, output: str | Path, options: Mapping[str, Any]
) -> None:
    """Elastic-net Cox on the concatenated modalities; penalty by inner CV on training patients."""
    started = time.perf_counter()
    reference = datas[0]
    x, split, has_any = _standardised(datas)
    train = np.flatnonzero((split != "test") & (split != "unused") & has_any)
    test = np.flatnonzero((split == "test") & has_any)
    model, alpha, details = fit_coxnet(
        x[train], reference.times[train], reference.censorship[train], seed=fold, **options
    )
    risk, curve = coxnet_predict(model, alpha, x[test], reference.inner_edges, reference.times[train].max())
    record = PredictionRecord(
        method="coxnet", fold=fold, inner_edges=reference.inner_edges.tolist(),
        gradient_steps=float("nan"), seconds=time.perf_counter() - started,
        details={**details, "n_features": int(x.shape[1]), "n_train": int(len(train))},
    )
    write_predictions(output, reference.case_ids[test], risk, curve, record)


def run_early_fusion(
    datas: Sequence[ModalityData], fold: int, output: str | Path,
    network_options: Mapping[str, Any], train_options: Mapping[str, Any],
) -> None:
    """Train one self-normalising network end to end on the concatenated modalities."""
    started = time.perf_counter()
    reference = datas[0]
    x, split, has_any = _standardised(datas)
    features = torch.from_numpy(x.astype(np.float32))

    def subset(name: str) -> tuple[np.ndarray, SurvivalDataset]:
        rows = np.flatnonzero((split == name) & has_any)
        dataset = SurvivalDataset(
            modalities={"concatenated": features[torch.as_tensor(rows, dtype=torch.long)]},
            times=reference.times[rows], censorship=reference.censorship[rows], labels=reference.labels[rows],
        )
        return rows, dataset

    (_, train), (_, validation), (test_rows, test) = subset("train"), subset("validation"), subset("test")
    train_options = dict(train_options)
    device = pick_device(train_options.pop("device", "auto"))
    config = TrainConfig(**{**train_options, "seed": int(train_options.get("seed", 0)) + fold})
    torch.manual_seed(config.seed)
    model = EarlyFusionNet(in_features=x.shape[1], n_bins=len(reference.inner_edges) + 1, **network_options)
    result = train_model(model.to(device), train, validation, config=config, fold=fold)
    logits = predict_logits(model, test)
    record = PredictionRecord(
        method="early_fusion", fold=fold, inner_edges=reference.inner_edges.tolist(),
        gradient_steps=result.gradient_steps, seconds=time.perf_counter() - started,
        details={"best_epoch": result.best_epoch, "n_features": int(x.shape[1]), "history": result.history},
    )
    write_predictions(
        output, reference.case_ids[test_rows], risk_score(logits).numpy(), survival_curve(logits).numpy(), record
    )


def run_late_fusion(block_predictions: Sequence[str | Path], fold: int, output: str | Path) -> None:
    """Mean risk and survival curve of the unimodal blocks over the modalities a patient has."""
    tables = [read_predictions(path) for path in block_predictions]
    case_ids = sorted(set().union(*(table.index for table, _ in tables)))
    risks, curves = [], []
    for table, _ in tables:
        aligned = table.reindex(case_ids)
        risks.append(aligned["risk"].to_numpy(float))
        curves.append(aligned[survival_columns(table)].to_numpy(float))
    risk, curve = late_fusion(risks, curves)
    first = tables[0][1]
    record = PredictionRecord(
        method="late_fusion", fold=fold, inner_edges=first.inner_edges, gradient_steps=0,
        seconds=sum(record.seconds for _, record in tables),
        details={"blocks": [record.method for _, record in tables]},
    )
    write_predictions(output, case_ids, risk, curve, record)
