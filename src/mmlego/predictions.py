"""Per-fold predictions of one method: a TSV of risks and survival curves plus a JSON record.

``predictions/<method>/fold_<k>.tsv`` has one row per held-out patient: ``case_id``,
``risk`` (higher means an earlier expected event) and ``survival_bin_<j>``, the predicted
probability of surviving past time bin j. The JSON beside it records the method, fold,
bin edges, gradient steps spent on multimodal training, and the seconds the method took.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmlego.atomic import atomic_path


@dataclass
class PredictionRecord:
    """Record of one method on one fold, stored beside its predictions."""

    method: str
    fold: int
    inner_edges: list[float]
    gradient_steps: float
    seconds: float
    n_patients: int = 0
    details: dict = field(default_factory=dict)


def record_path(tsv_path: str | Path) -> Path:
    return Path(tsv_path).with_suffix(".json")


def write_predictions(
    path: str | Path,
    case_ids: list[str] | np.ndarray,
    risk: np.ndarray,
    curve: np.ndarray,
    record: PredictionRecord,
) -> None:
    """Write ``risk`` (P,) and ``curve`` (P, n_bins) for ``case_ids``, and ``record`` as JSON."""
    risk = np.asarray(risk, dtype=float)
    curve = np.asarray(curve, dtype=float)
    if curve.ndim != 2 or curve.shape[0] != risk.shape[0] or len(case_ids) != risk.shape[0]:
        raise ValueError(
            f"predictions need equal patient counts, found {len(case_ids)} case_ids, "
            f"risk {risk.shape} and curve {curve.shape}"
        )
    table = pd.DataFrame({"case_id": list(case_ids), "risk": risk})
    for column in range(curve.shape[1]):
        table[f"survival_bin_{column}"] = curve[:, column]
    record.n_patients = len(table)
    with atomic_path(path) as tmp_path:
        table.to_csv(tmp_path, sep="\t", index=False, float_format="%.6g")
    with atomic_path(record_path(path)) as tmp_path:
        tmp_path.write_text(json.dumps(_json_safe(asdict(record)), indent=2) + "\n")


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, PredictionRecord]:
    """Return the prediction table (index ``case_id``) and its record."""
    table = pd.read_csv(path, sep="\t", dtype={"case_id": str}).set_index("case_id")
    values = json.loads(record_path(path).read_text())
    if values.get("gradient_steps") is None:
        values["gradient_steps"] = math.nan
    return table, PredictionRecord(**values)


def survival_columns(table: pd.DataFrame) -> list[str]:
    columns = [c for c in table.columns if c.startswith("survival_bin_")]
    return sorted(columns, key=lambda name: int(name.rsplit("_", 1)[1]))


def _json_safe(value):
    """Replace NaN by None so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
