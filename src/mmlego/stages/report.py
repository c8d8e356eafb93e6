"""The evaluation stage of one cohort: metrics over folds, summary, plots and provenance."""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from mmlego.atomic import atomic_path
from mmlego.data import sha256_of
from mmlego.evaluate import metrics_table, summary_markdown
from mmlego.plots import plot_c_index, plot_kaplan_meier
from mmlego.predictions import read_predictions

logger = logging.getLogger(__name__)

RECORDED_PACKAGES = (
    "mmlego", "torch", "numpy", "pandas", "scikit-learn", "scikit-survival", "anndata", "scanpy",
    "h5py", "openslide-python", "openslide-bin", "snakemake", "onnxruntime",
)


def evaluate_cohort(
    *,
    cohort: str,
    prediction_paths: Mapping[tuple[str, int], str | Path],
    cohort_tsv: str | Path,
    fold_jsons: Mapping[int, str | Path],
    metrics_path: str | Path,
    summary_path: str | Path,
    c_index_plot: str | Path,
    kaplan_meier_plot: str | Path,
) -> pd.DataFrame:
    """Score every (method, fold) prediction file and write the table, summary and plots."""
    labels = pd.read_csv(cohort_tsv, sep="\t", dtype={"case_id": str}).set_index("case_id")
    train_ids = {fold: json.loads(Path(path).read_text())["train"] for fold, path in fold_jsons.items()}
    metrics = metrics_table(prediction_paths, labels, train_ids)
    with atomic_path(metrics_path) as tmp_path:
        metrics.to_csv(tmp_path, sep="\t", index=False, float_format="%.6g")

    pooled = {}
    for (method, fold), path in prediction_paths.items():
        table, _ = read_predictions(path)
        pooled.setdefault(method, []).append(table.assign(fold=fold))
    pooled = {method: pd.concat(tables) for method, tables in pooled.items()}
    p_values = plot_kaplan_meier(
        pooled, labels, kaplan_meier_plot, title=f"{cohort}: out-of-fold risk groups (median split per fold)"
    )
    plot_c_index(metrics, c_index_plot, title=f"{cohort}: Harrell's C per fold")

    summary = summary_markdown(metrics, title=f"{cohort}: held-out survival metrics")
    summary += "\nLog-rank p-values of high vs low risk (pooled out-of-fold predictions):\n\n"
    summary += "\n".join(f"- {method}: {value:.3g}" for method, value in sorted(p_values.items())) + "\n"
    with atomic_path(summary_path) as tmp_path:
        tmp_path.write_text(summary)
    logger.info("%s: %d methods over %d folds evaluated", cohort, metrics["method"].nunique(), len(fold_jsons))
    return metrics


def write_provenance(
    path: str | Path,
    *,
    config: Mapping[str, Any],
    data_files: Sequence[str | Path],
    failed_slides: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Record package versions, the platform, the config, the sha256 of every input file and
    the cohort's slides that failed under ``slides.on_failure: skip``."""
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    checksums = {str(file): sha256_of(file) for file in data_files}
    record = {
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "config": config,
        "input_sha256": checksums,
        "failed_slides": [dict(record) for record in failed_slides],
    }
    with atomic_path(path) as tmp_path:
        tmp_path.write_text(json.dumps(record, indent=2, default=str) + "\n")

