"""Per-fold AnnData of one table modality, preprocessed with a fit on training patients only.

``build_modality`` fits the modality's transform on the fold's training patients that
have the modality, fits survival bins on all of the fold's training patients, and
applies both to every patient of the cohort. The fit is stored in ``uns``, and
``apply_fitted`` re-applies it to any patients with identical output; ``build_modality``
itself produces its matrix through ``apply_fitted``.

Layout of the AnnData (one per cohort, modality and fold):

- ``obs``: every patient of the cohort (index ``case_id``) with ``split`` (categorical:
  train, validation, test, excluded), ``survival_months``, ``censorship``, ``event``,
  ``bin`` (time-bin label) and ``present`` (the patient has a value in at least one of
  the modality's columns).
- ``var``: the output features (index), with ``source_column``, the table column each
  feature comes from.
- ``X``: float32 features; rows of absent patients are zeros.
- ``uns``: ``cohort``, ``fold``, ``modality``, ``transform``, ``transform_options`` and
  ``modality_spec`` (JSON text), ``source_columns``, ``fit`` (fitted parameters),
  ``n_fit_patients``, ``n_bins`` and ``bin_edges`` (inner edges, months).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from mmlego.atomic import atomic_path
from mmlego.cohort import (
    CENSORSHIP_COLUMN,
    ID_COLUMN,
    TIME_COLUMN,
    Cohort,
    collapse_to_patients,
    load_cohort,
)
from mmlego.modalities import (
    EmptyModalityError,
    ModalitySpec,
    modality_presence,
    parse_modality,
    select_columns,
)
from mmlego.splits import Fold, read_fold_json
from mmlego.survival import DEFAULT_N_BINS, assign_bins, fit_bin_edges
from mmlego.transforms import FittedTransform, apply_transform, fit_transform

logger = logging.getLogger(__name__)


def build_modality(
    cohort: Cohort, fold: Fold, spec: ModalitySpec, *, n_bins: int = DEFAULT_N_BINS
) -> ad.AnnData:
    """Fit the modality and the survival bins on ``fold``'s training patients; apply to all.

    Raises ``EmptyModalityError`` when the modality has no column or no patient with a
    value in this cohort, whatever the ``on_empty`` policy: skipping happens in the cohort
    stage, which leaves the modality out.
    """
    if spec.kind != "table":
        raise ValueError(
            f"modality {spec.name!r} is of kind {spec.kind!r}; only table modalities are built here."
        )
    columns = select_columns(spec, cohort.patients.columns)
    if not columns:
        raise EmptyModalityError(
            f"modality {spec.name!r}: the selector {spec.selector_text} matches no column of "
            f"{cohort.source}; remove the modality from this cohort or fix the selector."
        )
    patients = cohort.patients
    unknown = sorted(set(fold.train + fold.validation + fold.test) - set(patients.index))
    if unknown:
        raise ValueError(
            f"fold {fold.fold} of {fold.cohort!r} names {len(unknown)} case_id(s) missing from "
            f"{cohort.source}, e.g. {unknown[:5]}; rebuild the splits from this table."
        )
    split = fold.split_of(list(patients.index))
    is_train = np.asarray(split == "train")
    present = modality_presence(patients, columns).to_numpy()
    if not present.any():
        raise EmptyModalityError(
            f"modality {spec.name!r}: no patient of {cohort.source} has a value in its "
            f"{len(columns)} column(s)."
        )

    fit_rows = is_train & present
    fitted = fit_transform(spec.transform, spec.options, patients.loc[fit_rows, columns])
    labels = cohort.labels()
    bin_edges = fit_bin_edges(
        labels[TIME_COLUMN].to_numpy()[is_train],
        labels[CENSORSHIP_COLUMN].to_numpy()[is_train],
        n_bins=n_bins,
    )
    uns = {
        "cohort": fold.cohort,
        "fold": int(fold.fold),
        "modality": spec.name,
        "modality_spec": spec.to_json(),
        "transform": fitted.name,
        "transform_options": json.dumps(dict(fitted.options), sort_keys=True),
        "source_columns": np.asarray(fitted.source_columns, dtype=str),
        "fit": _to_storable(fitted.params),
        "n_fit_patients": int(fit_rows.sum()),
        "n_bins": int(n_bins),
        "bin_edges": np.asarray(bin_edges, dtype=np.float64),
    }
    adata = apply_fitted(uns, patients)
    adata.obs.insert(0, "split", split)
    logger.info(
        "%s %s fold %d: %d features from %d columns, fitted on %d training patients; "
        "%d of %d patients present",
        fold.cohort,
        spec.name,
        fold.fold,
        adata.n_vars,
        len(columns),
        int(fit_rows.sum()),
        int(present.sum()),
        len(present),
    )
    return adata


def apply_fitted(
    adata_or_uns: ad.AnnData | Mapping[str, Any], table: Cohort | pd.DataFrame
) -> ad.AnnData:
    """Re-apply a stored fit (an AnnData from ``build_modality`` or its ``uns``) to patients.

    ``table`` is a ``Cohort``, a patient table indexed by ``case_id``, or a slide-level
    table with a ``case_id`` column (collapsed first). Returns an AnnData with the same
    ``var`` and ``uns`` and, in ``obs``, ``present`` plus the survival labels and ``bin``
    when the table has ``survival_months`` and ``censorship``. Rows of patients without
    the modality are zeros.
    """
    uns = adata_or_uns.uns if isinstance(adata_or_uns, ad.AnnData) else adata_or_uns
    patients = _patient_table(table)
    fitted = fitted_transform_from_uns(uns)
    columns = list(fitted.source_columns)

    present = modality_presence(patients, [c for c in columns if c in patients.columns])
    values = apply_transform(fitted, patients)
    values[~present.to_numpy()] = 0.0

    obs = pd.DataFrame(index=pd.Index(patients.index.astype(str), name=ID_COLUMN))
    if TIME_COLUMN in patients.columns and CENSORSHIP_COLUMN in patients.columns:
        times = pd.to_numeric(patients[TIME_COLUMN]).to_numpy(dtype=np.float64)
        censorship = pd.to_numeric(patients[CENSORSHIP_COLUMN]).to_numpy().astype(np.int64)
        obs[TIME_COLUMN] = times
        obs[CENSORSHIP_COLUMN] = censorship
        obs["event"] = 1 - censorship
        obs["bin"] = assign_bins(times, np.asarray(uns["bin_edges"], dtype=np.float64))
    obs["present"] = present.to_numpy(dtype=bool)

    var = pd.DataFrame(
        {"source_column": pd.Categorical(fitted.feature_sources)}, index=pd.Index(fitted.features)
    )
    return ad.AnnData(X=values, obs=obs, var=var, uns=_copy_uns(uns))


def fitted_transform_from_uns(uns: Mapping[str, Any]) -> FittedTransform:
    """Rebuild the ``FittedTransform`` stored by ``build_modality`` in ``uns``."""
    missing = [
        k
        for k in ("transform", "transform_options", "source_columns", "fit", "bin_edges")
        if k not in uns
    ]
    if missing:
        raise KeyError(
            f"uns lacks {missing}; pass an AnnData written by build_modality or its uns."
        )
    return FittedTransform(
        name=str(uns["transform"]),
        options=json.loads(str(uns["transform_options"])),
        source_columns=tuple(str(c) for c in uns["source_columns"]),
        params=_from_storable(uns["fit"]),
    )


def write_modality(adata: ad.AnnData, path: str | Path) -> None:
    """Write the AnnData to ``path`` (.h5ad) atomically."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def build_omics_output(
    table_path: str | Path,
    fold_path: str | Path,
    output_path: str | Path,
    *,
    spec: ModalitySpec,
    n_bins: int = DEFAULT_N_BINS,
) -> ad.AnnData:
    """Read the cohort table and a fold file, build the modality and write it as .h5ad."""
    cohort = load_cohort(table_path)
    fold = read_fold_json(fold_path)
    adata = build_modality(cohort, fold, spec, n_bins=n_bins)
    write_modality(adata, output_path)
    logger.info("wrote %s (%d patients x %d features)", output_path, adata.n_obs, adata.n_vars)
    return adata


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build one modality's AnnData for one fold of a cohort."""
    import yaml

    from mmlego.logs import setup_logging

    parser = argparse.ArgumentParser(prog="mmlego omics", description=main.__doc__)
    parser.add_argument(
        "--config", required=True, help="workflow config YAML (modalities, survival)"
    )
    parser.add_argument(
        "--table", required=True, help="cohort table (.csv, .tsv, .csv.zip, .parquet)"
    )
    parser.add_argument("--fold", required=True, help="fold JSON written by `mmlego cohort`")
    parser.add_argument("--modality", required=True, help="modality name, a key of `modalities`")
    parser.add_argument("--output", required=True, help="output .h5ad path")
    args = parser.parse_args(argv)
    setup_logging()

    with open(args.config) as handle:
        config = yaml.safe_load(handle) or {}
    modalities = config.get("modalities") or {}
    if args.modality not in modalities:
        parser.error(
            f"modality {args.modality!r} not found in {args.config} (found {sorted(modalities)})"
        )
    n_bins = (config.get("survival") or {}).get("n_bins", DEFAULT_N_BINS)
    build_omics_output(
        args.table,
        args.fold,
        args.output,
        spec=parse_modality(args.modality, modalities[args.modality]),
        n_bins=n_bins,
    )
    return 0


def _patient_table(table: Cohort | pd.DataFrame) -> pd.DataFrame:
    if isinstance(table, Cohort):
        return table.patients
    if ID_COLUMN in table.columns:
        patients, _ = collapse_to_patients(table)
        return patients
    if table.index.name != ID_COLUMN:
        raise ValueError(
            f"table must be a Cohort, have a {ID_COLUMN!r} column, or be indexed by "
            f"{ID_COLUMN!r}; found index {table.index.name!r}."
        )
    return table


def _to_storable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts of numpy arrays that anndata writes to HDF5 and reads back unchanged."""
    stored = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            stored[key] = _to_storable(value)
        else:
            array = np.asarray(value)
            stored[key] = array.astype(str) if array.dtype.kind in "OU" else array
    return stored


def _from_storable(stored: Mapping[str, Any]) -> dict[str, Any]:
    params = {}
    for key, value in stored.items():
        if isinstance(value, Mapping):
            params[key] = _from_storable(value)
        else:
            array = np.asarray(value)
            params[key] = array.astype(str) if array.dtype.kind in "OUS" else array
    return params


def _copy_uns(uns: Mapping[str, Any]) -> dict[str, Any]:
    copied = {}
    for key, value in uns.items():
        copied[key] = _copy_uns(value) if isinstance(value, Mapping) else value
    return copied
