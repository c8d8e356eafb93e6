"""End-to-end check on real data: scikit-survival's breast cancer cohort (198 patients).

Two modalities, 76 gene-expression columns and the clinical columns, each get a LegoBlock
trained alone. LegoMerge then combines them with zero multimodal gradient steps.
"""

import logging

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split
from sksurv.column import encode_categorical
from sksurv.datasets import load_breast_cancer

from mmlego.metrics import harrell_c
from mmlego.nn import LegoBlock, LegoMerge
from mmlego.survival import assign_bins, fit_bin_edges, risk_score
from mmlego.training import SurvivalDataset, TrainConfig, predict_logits, seed_everything, train_model

logger = logging.getLogger(__name__)

N_FOLDS = 5
MIN_MEAN_MERGED_C = 0.60


def load_cohort():
    features, outcome = load_breast_cancer()
    features = encode_categorical(features)
    genes = [column for column in features.columns if column.startswith("X")]
    clinical = [column for column in features.columns if column not in genes]
    times = outcome["t.tdm"].astype(float)
    censorship = (~outcome["e.tdm"]).astype(float)
    tables = {"genes": features[genes].to_numpy(float), "clinical": features[clinical].to_numpy(float)}
    return tables, times, censorship


def standardise(table, train_index):
    mean = table[train_index].mean(axis=0)
    scale = table[train_index].std(axis=0) + 1e-8
    return torch.tensor((table - mean) / scale, dtype=torch.float32)


def held_out_c(model, dataset, times, censorship):
    risk = risk_score(predict_logits(model, dataset)).numpy()
    return harrell_c(risk, times, censorship)


@pytest.fixture
def single_thread():
    # One intra-op thread is faster for these small matrices and avoids oversubscribing the CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_cross_validation():
    tables, times, censorship = load_cohort()
    scores = {"genes": [], "clinical": [], "merge": []}
    folds = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=0).split(times, censorship)
    for fold, (train_index, test_index) in enumerate(folds):
        inner_train, inner_val = train_test_split(
            train_index, test_size=0.2, stratify=censorship[train_index], random_state=fold
        )
        edges = fit_bin_edges(times[inner_train], censorship[inner_train])
        labels = assign_bins(times, edges)
        modalities = {name: standardise(table, inner_train) for name, table in tables.items()}

        blocks = {}
        for name, data in modalities.items():
            dataset = SurvivalDataset(modalities={name: data}, times=times, censorship=censorship, labels=labels)
            seed_everything(fold)  # the encoder's initial weights come from the global random state
            block = LegoBlock(in_features=data.shape[1])
            train_model(
                block, dataset.subset(inner_train), dataset.subset(inner_val),
                config=TrainConfig(seed=fold), fold=fold,
            )
            scores[name].append(held_out_c(block, dataset.subset(test_index), times[test_index], censorship[test_index]))
            blocks[name] = block

        merged = LegoMerge(blocks=blocks, method="harmonic", head_merge="slerp")
        both = SurvivalDataset(modalities=modalities, times=times, censorship=censorship, labels=labels)
        scores["merge"].append(held_out_c(merged, both.subset(test_index), times[test_index], censorship[test_index]))
        assert merged.gradient_steps == 0
        assert all(parameter.grad is None for parameter in merged.head.parameters())
    return scores


def test_merged_blocks_beat_threshold(single_thread):
    scores = run_cross_validation()
    for name, values in scores.items():
        line = f"{name}: C per fold {np.round(values, 3).tolist()}, mean {np.mean(values):.3f}"
        logger.info(line)
        print(line)
    assert all(np.isfinite(value) for values in scores.values() for value in values)
    assert np.mean(scores["merge"]) >= MIN_MEAN_MERGED_C
