"""Feature transforms for table modalities, fitted on training patients and re-applicable.

Each transform has a fit step, which uses only the training patients that have the
modality and returns plain parameters (numpy arrays and strings, storable in an AnnData's
``uns``), and an apply step, which maps any patients' columns to features with those
parameters alone. Apply works row by row, so a patient's features do not depend on which
other patients are transformed with it.

Transforms:

- ``signed_log_zscore`` (RNA z-scores with outliers): ``sign(x) * log1p(|x|)``, median
  imputation, drop near-constant genes, keep the ``max_features`` genes of highest
  variance, standardise.
- ``zscore`` (copy number): median imputation, drop near-constant features, standardise.
- ``binary`` (mutation status 0/1): mode imputation, drop genes mutated in fewer than
  ``min_count`` training patients; values stay 0/1 unless ``center`` subtracts the
  training mutation frequency.
- ``clinical``: numeric columns standardised (median imputation), binary columns kept 0/1
  (mode imputation), categorical columns one-hot encoded with the training categories
  (an unseen or missing category gives all zeros).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# Defaults of each transform's options; workflow/schemas/config.schema.yaml repeats them.
#
# max_features 1000 keeps about two thirds of the ~1550 genes of the PORPOISE RNA tables.
# With 200-800 training patients per fold, fewer inputs shrink the encoder's first layer,
# and the dropped genes are those that vary least across the cohort. Set null to keep
# every gene that passes the near-constant filter.
# near_constant_fraction 0.9 drops RNA genes where one value covers 90% of training
# patients: in BLCA, BRCA and KIRP about 40-70 of ~1550 genes. In BLCA that value is the
# gene's minimum in every case, a floor that suggests an unexpressed gene, and the few
# other values would become extreme standardised outliers.
# min_count 5 drops mutations seen in fewer than five training patients, too few
# positives for an encoder to learn from.
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "signed_log_zscore": {"max_features": 1000, "near_constant_fraction": 0.9, "max_value": None},
    "zscore": {"near_constant_fraction": 0.95, "max_value": None},
    "binary": {"min_count": 5, "center": False},
    "clinical": {"numeric": [], "binary": [], "categorical": []},
}
TRANSFORMS = tuple(OPTION_DEFAULTS)


class TransformError(ValueError):
    """A transform cannot be fitted or applied; the message names the columns."""


@dataclass(frozen=True)
class FittedTransform:
    """A transform with its options and the parameters fitted on training patients.

    ``source_columns`` are the table columns the modality selected, and ``params``
    contains the fitted values (see each ``_fit_*`` function). ``features`` and
    ``feature_sources`` are the output feature names and the table column of each.
    """

    name: str
    options: Mapping[str, Any]
    source_columns: tuple[str, ...]
    params: Mapping[str, Any]

    @property
    def features(self) -> list[str]:
        return _feature_names(self)[0]

    @property
    def feature_sources(self) -> list[str]:
        return _feature_names(self)[1]


def resolve_options(name: str, options: Mapping[str, Any] | None, *, where: str) -> dict:
    """Merge ``options`` over the transform's defaults and check their values."""
    if name not in OPTION_DEFAULTS:
        raise TransformError(
            f"{where}: unknown transform {name!r}; use one of {list(TRANSFORMS)}."
        )
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_DEFAULTS[name]))
    if unknown:
        raise TransformError(
            f"{where}: unknown option(s) {unknown} for transform {name!r}; valid options "
            f"are {sorted(OPTION_DEFAULTS[name])}."
        )
    resolved = {**OPTION_DEFAULTS[name], **options}
    _check_options(name, resolved, where)
    return resolved


def fit_transform(name: str, options: Mapping[str, Any], train: pd.DataFrame) -> FittedTransform:
    """Fit transform ``name`` on ``train`` (training patients with the modality, by column)."""
    if len(train) == 0:
        raise TransformError(
            f"transform {name!r}: no training patient has this modality, so nothing can be "
            f"fitted; check the split and the modality's columns."
        )
    fit = {
        "signed_log_zscore": _fit_signed_log_zscore,
        "zscore": _fit_zscore,
        "binary": _fit_binary,
        "clinical": _fit_clinical,
    }[name]
    fitted = FittedTransform(
        name=name,
        options=dict(options),
        source_columns=tuple(str(column) for column in train.columns),
        params=fit(train, options),
    )
    if not fitted.features:
        raise TransformError(
            f"transform {name!r}: no feature is left after fitting on {len(train)} training "
            f"patients and {train.shape[1]} column(s); relax the filter options."
        )
    return fitted


def apply_transform(fitted: FittedTransform, data: pd.DataFrame) -> np.ndarray:
    """Map the rows of ``data`` to features with the fitted parameters, as float32.

    ``data`` must contain the fitted ``source_columns``; missing cells get the fitted
    imputation values.
    """
    missing = [column for column in fitted.source_columns if column not in data.columns]
    if missing:
        shown = missing[:10] + (["..."] if len(missing) > 10 else [])
        raise TransformError(
            f"transform {fitted.name!r}: the table lacks {len(missing)} column(s) the fit "
            f"used: {shown}."
        )
    if fitted.name == "clinical":
        values = _apply_clinical(fitted.params, data)
    else:
        values = _apply_standard(fitted, data)
    return values.astype(np.float32)


# --- fitting -----------------------------------------------------------------------------


def _fit_signed_log_zscore(train: pd.DataFrame, options: Mapping[str, Any]) -> dict:
    values = _signed_log(train.to_numpy(dtype=np.float64))
    columns = np.asarray(train.columns, dtype=str)
    values, columns, impute = _impute_median(values, columns)
    keep = ~_near_constant(values, options["near_constant_fraction"])
    _log_dropped("near-constant", columns[~keep], options["near_constant_fraction"])
    values, columns, impute = values[:, keep], columns[keep], impute[keep]

    mean, std = _fit_scale(values)
    top = _top_variance(std, options["max_features"])
    if top.size < columns.size:
        logger.info("kept the %d of %d genes of highest variance", top.size, columns.size)
    return {
        "features": columns[top],
        "impute": impute[top],
        "mean": mean[top],
        "std": std[top],
    }


def _fit_zscore(train: pd.DataFrame, options: Mapping[str, Any]) -> dict:
    values = train.to_numpy(dtype=np.float64)
    columns = np.asarray(train.columns, dtype=str)
    values, columns, impute = _impute_median(values, columns)
    keep = ~_near_constant(values, options["near_constant_fraction"])
    _log_dropped("near-constant", columns[~keep], options["near_constant_fraction"])
    values, columns, impute = values[:, keep], columns[keep], impute[keep]

    mean, std = _fit_scale(values)
    return {"features": columns, "impute": impute, "mean": mean, "std": std}


def _fit_binary(train: pd.DataFrame, options: Mapping[str, Any]) -> dict:
    import scanpy as sc

    values = train.to_numpy(dtype=np.float64)
    columns = np.asarray(train.columns, dtype=str)
    _check_binary(values, columns)
    impute = _mode_binary(values)
    values = np.where(np.isnan(values), impute, values)

    keep, count = sc.pp.filter_genes(values, min_cells=options["min_count"], inplace=False)
    _log_dropped(f"mutated in fewer than {options['min_count']} training patients", columns[~keep])
    return {
        "features": columns[keep],
        "impute": impute[keep],
        "count": np.asarray(count, dtype=np.int64)[keep],
        # Training mutation frequency, subtracted only when the option `center` is true.
        "mean": values[:, keep].mean(axis=0),
    }


def _fit_clinical(train: pd.DataFrame, options: Mapping[str, Any]) -> dict:
    _check_clinical_roles(train.columns, options)
    numeric = np.asarray(options["numeric"], dtype=str)
    values = train[list(numeric)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    values, numeric, impute = _impute_median(values, numeric)
    mean, std = _fit_scale(values)

    binary = np.asarray(options["binary"], dtype=str)
    binary_values = train[list(binary)].to_numpy(dtype=np.float64)
    _check_binary(binary_values, binary)

    categories = {}
    for column in options["categorical"]:
        observed = _category_strings(train[column]).dropna().unique()
        categories[column] = np.asarray(sorted(observed), dtype=str)
        if not len(observed):
            logger.warning("categorical column %s has no value in the training patients", column)
    return {
        "numeric": {
            "features": numeric,
            "impute": impute,
            "mean": mean,
            "std": std,
        },
        "binary": {"features": binary, "impute": _mode_binary(binary_values)},
        "categorical": {"columns": np.asarray(options["categorical"], dtype=str), **categories},
    }


# --- applying ----------------------------------------------------------------------------


def _apply_standard(fitted: FittedTransform, data: pd.DataFrame) -> np.ndarray:
    params = fitted.params
    features = [str(f) for f in params["features"]]
    values = data[features].to_numpy(dtype=np.float64)
    if fitted.name == "signed_log_zscore":
        values = _signed_log(values)
    values = np.where(np.isnan(values), params["impute"], values)
    if fitted.name == "binary":
        if fitted.options["center"]:
            values = values - params["mean"]
        return values
    values = (values - params["mean"]) / params["std"]
    max_value = fitted.options.get("max_value")
    if max_value is not None:
        values = np.clip(values, -max_value, max_value)
    return values


def _apply_clinical(params: Mapping[str, Any], data: pd.DataFrame) -> np.ndarray:
    numeric = params["numeric"]
    numeric_columns = [str(f) for f in numeric["features"]]
    values = data[numeric_columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    values = np.where(np.isnan(values), numeric["impute"], values)
    parts = [(values - numeric["mean"]) / numeric["std"]]

    binary = params["binary"]
    values = data[[str(f) for f in binary["features"]]].to_numpy(dtype=np.float64)
    parts.append(np.where(np.isnan(values), binary["impute"], values))

    categorical = params["categorical"]
    for column in [str(c) for c in categorical["columns"]]:
        observed = _category_strings(data[column]).to_numpy(dtype=object)
        categories = np.asarray(categorical[column], dtype=object)
        # An unseen or missing category matches no training category: all zeros.
        parts.append((observed[:, None] == categories[None, :]).astype(np.float64))
    return np.concatenate([part.reshape(len(data), -1) for part in parts], axis=1)


def _feature_names(fitted: FittedTransform) -> tuple[list[str], list[str]]:
    params = fitted.params
    if fitted.name != "clinical":
        names = [str(f) for f in params["features"]]
        return names, names
    names = [str(f) for f in params["numeric"]["features"]]
    names += [str(f) for f in params["binary"]["features"]]
    sources = list(names)
    for column in [str(c) for c in params["categorical"]["columns"]]:
        for category in params["categorical"][column]:
            names.append(f"{column}={category}")
            sources.append(column)
    return names, sources


# --- helpers -----------------------------------------------------------------------------


def _fit_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean and standard deviation that ``scanpy.pp.scale`` uses, per column.

    scanpy uses one degree of freedom and replaces a zero standard deviation with 1.
    """
    # Imported here so that parsing the workflow, which checks options, skips scanpy.
    import scanpy as sc

    if values.shape[1] == 0:
        return np.zeros(0), np.zeros(0)
    _, mean, std = sc.pp.scale(values, zero_center=True, copy=True, return_mean_std=True)
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def _signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: log-compresses large magnitudes on both sides of zero."""
    return np.sign(values) * np.log1p(np.abs(values))


def _impute_median(
    values: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill missing cells with the column's training median; drop columns with no value."""
    observed = ~np.isnan(values).all(axis=0)
    _log_dropped("without any training value", columns[~observed])
    values, columns = values[:, observed], columns[observed]
    if values.shape[1] == 0:
        return values, columns, np.zeros(0)
    impute = np.nanmedian(values, axis=0)
    return np.where(np.isnan(values), impute, values), columns, impute


def _near_constant(values: np.ndarray, fraction: float | None) -> np.ndarray:
    """Flag constant columns, and columns whose most frequent value covers ``fraction``."""
    constant = np.ptp(values, axis=0) == 0 if values.shape[0] else np.ones(values.shape[1], bool)
    if fraction is None:
        return constant
    mode_share = np.array(
        [np.unique(column, return_counts=True)[1].max() / len(column) for column in values.T]
    )
    return constant | (mode_share >= fraction)


def _top_variance(std: np.ndarray, max_features: int | None) -> np.ndarray:
    """Positions of the ``max_features`` largest standard deviations, in column order."""
    if max_features is None or max_features >= std.size:
        return np.arange(std.size)
    ranked = np.argsort(-std, kind="stable")[:max_features]
    return np.sort(ranked)


def _mode_binary(values: np.ndarray) -> np.ndarray:
    """Most frequent of 0 and 1 per column, ignoring missing cells; 0 on ties."""
    ones = np.nansum(values, axis=0)
    observed = (~np.isnan(values)).sum(axis=0)
    return (ones > observed - ones).astype(np.float64)


def _check_binary(values: np.ndarray, columns: np.ndarray) -> None:
    invalid = ~np.isnan(values) & (values != 0) & (values != 1)
    if invalid.any():
        bad = columns[invalid.any(axis=0)]
        found = np.unique(values[invalid])[:5]
        raise TransformError(
            f"binary columns must hold 0, 1 or missing values; {len(bad)} column(s) do not, "
            f"for example {list(bad[:5])} with values {found.tolist()}. Use the zscore "
            f"transform for them or fix the table."
        )


def _category_strings(column: pd.Series) -> pd.Series:
    """Categories as strings, so 2 read from CSV and "2" from parquet compare equal."""
    return column.map(lambda value: value if pd.isna(value) else str(value))


def _check_clinical_roles(columns: pd.Index, options: Mapping[str, Any]) -> None:
    roles = {role: list(options[role]) for role in ("numeric", "binary", "categorical")}
    assigned = [column for names in roles.values() for column in names]
    duplicated = sorted({column for column in assigned if assigned.count(column) > 1})
    unassigned = [str(column) for column in columns if column not in assigned]
    not_selected = [column for column in assigned if column not in set(map(str, columns))]
    problems = []
    if duplicated:
        problems.append(f"column(s) {duplicated} have more than one role")
    if unassigned:
        problems.append(f"selected column(s) {unassigned} have no role")
    if not_selected:
        problems.append(f"column(s) {not_selected} have a role but are not selected")
    if problems:
        raise TransformError(
            "clinical transform: " + "; ".join(problems) + ". List every selected column "
            "under exactly one of the options numeric, binary and categorical."
        )


def _check_options(name: str, options: Mapping[str, Any], where: str) -> None:
    def fail(key: str, expected: str) -> None:
        raise TransformError(f"{where}.{key}: expected {expected}, found {options[key]!r}.")

    for key, value in options.items():
        if key == "max_features" and value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(key, "an integer >= 1 or null")
        elif key == "near_constant_fraction" and value is not None:
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                fail(key, "a number in (0, 1] or null")
        elif key == "max_value" and value is not None:
            if not isinstance(value, (int, float)) or value <= 0:
                fail(key, "a positive number or null")
        elif key == "min_count":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(key, "an integer >= 0")
        elif key == "center" and not isinstance(value, bool):
            fail(key, "true or false")
        elif key in ("numeric", "binary", "categorical"):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                fail(key, "a list of column names")


def _log_dropped(reason: str, columns: np.ndarray, threshold: Any = None) -> None:
    if len(columns):
        detail = f" (threshold {threshold})" if threshold is not None else ""
        shown = ", ".join(map(str, columns[:10])) + (", ..." if len(columns) > 10 else "")
        logger.info("dropped %d feature(s) %s%s: %s", len(columns), reason, detail, shown)
