"""Load one modality of one fold as arrays: patients, split, survival targets and inputs.

Table modalities come from the omics stage's AnnData. The slide modality gives each
patient a bag: the union of the patch features of its slides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import torch

from mmlego.slides.failures import SlideFailedError, check_on_failure, failed_slides
from mmlego.survival import assign_bins, fit_bin_edges
from mmlego.training import SurvivalDataset

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class ModalityData:
    """One modality of one fold for every patient of the cohort, in cohort order.

    ``features`` is a float32 tensor (P, D) for a table modality (zero rows where absent)
    or a list of P bags (n_i, D) for the slide modality (n_i = 0 where absent).
    """

    name: str
    case_ids: np.ndarray
    split: np.ndarray
    times: np.ndarray
    censorship: np.ndarray
    labels: np.ndarray
    present: np.ndarray
    features: torch.Tensor | list[torch.Tensor]
    inner_edges: np.ndarray

    @property
    def is_bag(self) -> bool:
        return not isinstance(self.features, torch.Tensor)

    @property
    def in_features(self) -> int:
        if isinstance(self.features, torch.Tensor):
            return int(self.features.shape[1])
        return int(self.features[0].shape[1])

    def rows(self, split: str, *, present_only: bool = True) -> np.ndarray:
        """Indices of the patients in ``split`` (and with the modality, by default)."""
        chosen = self.split == split
        if present_only:
            chosen &= self.present
        return np.flatnonzero(chosen)

    def dataset(self, rows: np.ndarray) -> SurvivalDataset:
        """Build a one-modality ``SurvivalDataset`` of the given patient rows."""
        if isinstance(self.features, torch.Tensor):
            features = self.features[torch.as_tensor(rows, dtype=torch.long)]
        else:
            features = [self.features[row] for row in rows]
        return SurvivalDataset(
            modalities={self.name: features},
            times=self.times[rows],
            censorship=self.censorship[rows],
            labels=self.labels[rows],
        )


def load_table_modality(path: str | Path) -> ModalityData:
    """Read a modality AnnData written by the omics stage."""
    adata = ad.read_h5ad(path)
    obs = adata.obs
    name = str(adata.uns["modality"])
    return ModalityData(
        name=name,
        case_ids=np.asarray(obs.index, dtype=str),
        split=np.asarray(obs["split"], dtype=str),
        times=obs["survival_months"].to_numpy(float),
        censorship=obs["censorship"].to_numpy(float),
        labels=obs["bin"].to_numpy(np.int64),
        present=obs["present"].to_numpy(bool),
        features=torch.as_tensor(np.asarray(adata.X, dtype=np.float32)),
        inner_edges=np.asarray(adata.uns["bin_edges"], dtype=float),
    )


def fold_split(case_ids: Sequence[str], fold_json: str | Path) -> np.ndarray:
    """Split label of each patient ("train", "validation", "test" or "unused")."""
    fold = json.loads(Path(fold_json).read_text())
    split = pd.Series("unused", index=list(case_ids), dtype=object)
    for name in SPLITS:
        members = [case for case in fold[name] if case in split.index]
        split.loc[members] = name
    return split.to_numpy(dtype=str)


def load_slide_modality(
    *,
    name: str,
    cohort_tsv: str | Path,
    fold_json: str | Path,
    slide_cases: Mapping[str, str],
    feature_paths: Mapping[str, str | Path],
    n_bins: int,
    on_failure: str = "error",
) -> ModalityData:
    """Build each patient's bag from its slides' feature files.

    ``slide_cases`` maps slide_id to case_id (the slide sheet); ``feature_paths`` maps
    slide_id to its features HDF5. A slide without a feature file, or with zero patches,
    adds nothing; a patient whose bag stays empty does not have the modality.

    A features file marked ``status = "failed"`` (written under ``slides.on_failure: skip``)
    has no patches and is logged as a warning. With ``on_failure="error"`` it raises
    ``SlideFailedError`` instead, so a policy changed back to error is enforced.
    """
    check_slide_failures(feature_paths, slide_cases, name=name, on_failure=on_failure)
    cohort = pd.read_csv(cohort_tsv, sep="\t", dtype={"case_id": str}).set_index("case_id")
    case_ids = np.asarray(cohort.index, dtype=str)
    split = fold_split(case_ids, fold_json)
    times = cohort["survival_months"].to_numpy(float)
    censorship = cohort["censorship"].to_numpy(float)
    is_train = split == "train"
    inner_edges = fit_bin_edges(times[is_train], censorship[is_train], n_bins=n_bins)

    parts: dict[str, list[np.ndarray]] = {case: [] for case in case_ids}
    width = None
    for slide_id, path in feature_paths.items():
        case = slide_cases.get(slide_id)
        with h5py.File(path, "r") as handle:
            features = np.asarray(handle["features"], dtype=np.float32)
        width = features.shape[1] if features.ndim == 2 else width
        if case in parts and len(features):
            parts[case].append(features)
    if width is None:
        raise ValueError(f"modality {name!r}: no slide feature file was given")
    bags = [
        torch.from_numpy(np.concatenate(parts[case])) if parts[case] else torch.zeros((0, width))
        for case in case_ids
    ]
    present = np.array([len(bag) > 0 for bag in bags])
    logger.info(
        "%s: %d of %d patients have patches (%d patches in all)",
        name, present.sum(), len(case_ids), sum(len(bag) for bag in bags),
    )
    return ModalityData(
        name=name,
        case_ids=case_ids,
        split=split,
        times=times,
        censorship=censorship,
        labels=assign_bins(times, inner_edges),
        present=present,
        features=bags,
        inner_edges=np.asarray(inner_edges, dtype=float),
    )


def check_slide_failures(
    feature_paths: Mapping[str, str | Path],
    slide_cases: Mapping[str, str],
    *,
    name: str,
    on_failure: str,
) -> list[dict]:
    """Return the failure records of the feature files, or raise ``SlideFailedError`` when
    there are any and ``on_failure`` is "error"."""
    check_on_failure(on_failure)
    failed = failed_slides(feature_paths, slide_cases)
    if failed and on_failure == "error":
        listed = "; ".join(
            f"{record['slide_id']} ({record['failed_stage']} stage: {record['error']})" for record in failed
        )
        raise SlideFailedError(
            f"modality {name!r}: {len(failed)} slide(s) failed under slides.on_failure: skip, "
            f"and the policy is now error: {listed}. Fix or replace those slide files so their "
            "stages run again, or set slides.on_failure: skip."
        )
    for record in failed:
        logger.warning(
            "%s: slide %s of patient %s failed at the %s stage and adds no patches: %s: %s",
            name, record["slide_id"], record["case_id"], record["failed_stage"],
            record["error_type"], record["error"],
        )
    return failed


def multimodal_dataset(datas: Sequence[ModalityData], rows: np.ndarray) -> SurvivalDataset:
    """Build a dataset of several modalities of one fold, with presence per patient (P, K)."""
    reference = datas[0]
    for data in datas[1:]:
        if not np.array_equal(data.case_ids, reference.case_ids):
            raise ValueError(
                f"modalities {reference.name!r} and {data.name!r} list different patients; "
                "both must come from the same cohort stage"
            )
        if not np.allclose(data.inner_edges, reference.inner_edges):
            raise ValueError(
                f"modalities {reference.name!r} and {data.name!r} use different survival bins "
                f"({reference.inner_edges} and {data.inner_edges}); both must come from the same fold"
            )
    modalities = {}
    for data in datas:
        if isinstance(data.features, torch.Tensor):
            modalities[data.name] = data.features[torch.as_tensor(rows, dtype=torch.long)]
        else:
            modalities[data.name] = [data.features[row] for row in rows]
    presence = np.stack([data.present[rows] for data in datas], axis=1)
    return SurvivalDataset(
        modalities=modalities,
        times=reference.times[rows],
        censorship=reference.censorship[rows],
        labels=reference.labels[rows],
        presence=torch.as_tensor(presence),
    )


def concatenated_features(datas: Sequence[ModalityData]) -> np.ndarray:
    """Concatenate modalities into one matrix (P, sum D): bags are mean-pooled, absent rows zero.

    Table modalities are standardised on training patients, so a zero row is the training
    mean; a missing bag also becomes zeros.
    """
    blocks = []
    for data in datas:
        if isinstance(data.features, torch.Tensor):
            blocks.append(data.features.numpy())
        else:
            width = data.in_features
            blocks.append(
                np.stack([bag.mean(0).numpy() if len(bag) else np.zeros(width, np.float32) for bag in data.features])
            )
    return np.concatenate(blocks, axis=1).astype(np.float32)


def load_modality(
    name: str,
    *,
    h5ad: str | Path | None = None,
    cohort_tsv: str | Path | None = None,
    fold_json: str | Path | None = None,
    feature_files: Sequence[str | Path] = (),
    slide_cases: Mapping[str, str] | None = None,
    n_bins: int = 4,
    on_failure: str = "error",
) -> ModalityData:
    """Load a table modality from its AnnData, or the slide modality from feature files.

    Feature files are named ``<slide_id>.h5``, as the slide stages write them.
    ``on_failure`` is the slide failure policy (see ``load_slide_modality``).
    """
    if h5ad is not None:
        data = load_table_modality(h5ad)
        if data.name != name:
            raise ValueError(f"{h5ad} contains modality {data.name!r}, expected {name!r}")
        return data
    if cohort_tsv is None or fold_json is None:
        raise ValueError(f"modality {name!r}: give either h5ad or cohort_tsv, fold_json and feature_files")
    return load_slide_modality(
        name=name,
        cohort_tsv=cohort_tsv,
        fold_json=fold_json,
        slide_cases=slide_cases or {},
        feature_paths={Path(path).stem: path for path in feature_files},
        n_bins=n_bins,
        on_failure=on_failure,
    )


def load_job_modality(name: str, job_input: Any, slide_params: Mapping[str, Any]) -> ModalityData:
    """``load_modality`` for a workflow job whose named inputs come from ``modality_inputs``."""
    if hasattr(job_input, "h5ad"):
        return load_modality(name, h5ad=job_input.h5ad)
    return load_modality(
        name,
        cohort_tsv=job_input.cohort,
        fold_json=job_input.fold,
        feature_files=list(job_input.features),
        slide_cases=slide_params["slide_cases"],
        n_bins=slide_params["n_bins"],
        on_failure=slide_params["on_failure"],
    )


def load_job_modalities(
    names: Sequence[str], job_input: Any, slide_params: Mapping[str, Any]
) -> list[ModalityData]:
    """Load several modalities of a job whose inputs are named ``<modality>__<input>``."""
    datas = []
    for name in names:
        prefix = f"{name}__"
        fields = {key[len(prefix) :]: getattr(job_input, key) for key in job_input.keys() if key.startswith(prefix)}
        datas.append(load_job_modality(name, SimpleNamespace(**fields), slide_params))
    return datas
