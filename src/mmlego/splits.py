"""Patient-level cross-validation folds with an inner validation set per fold.

Folds come from PORPOISE split files (columns ``train`` and ``val`` of case_id, where
``val`` is the held-out test fold) or are generated: seeded, stratified by event status.
In both cases a seeded, event-stratified fraction of each fold's training patients
becomes the inner validation set for early stopping, and the held-out fold is the test
set, scored once.

Patients of the table that a split file lists in neither column are excluded from that
fold: they are in no set, the fold's ``excluded`` list names them, and a warning gives
their count.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from mmlego.atomic import atomic_path

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test", "excluded")
MAX_LISTED = 10


class SplitError(ValueError):
    """A split file or split setting is invalid; the message names the ids and the file."""


@dataclass(frozen=True)
class SplitConfig:
    """One cohort's ``splits`` config entry; defaults match the config schema."""

    files: str | None = None
    n_folds: int = 5
    seed: int = 0
    inner_validation_fraction: float = 0.2

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> SplitConfig:
        unknown = sorted(set(entry) - {"files", "n_folds", "seed", "inner_validation_fraction"})
        if unknown:
            raise SplitError(f"splits: unknown key(s) {unknown}.")
        config = cls(**{key: value for key, value in entry.items()})
        if config.files is None and config.n_folds < 2:
            raise SplitError(
                f"splits.n_folds: generated folds need n_folds >= 2, found {config.n_folds}."
            )
        if config.n_folds < 1:
            raise SplitError(f"splits.n_folds: expected an integer >= 1, found {config.n_folds}.")
        if not 0 < config.inner_validation_fraction < 0.5:
            raise SplitError(
                "splits.inner_validation_fraction: expected a number in (0, 0.5), found "
                f"{config.inner_validation_fraction}."
            )
        if config.files is not None and "{fold}" not in config.files:
            raise SplitError(
                f"splits.files: {config.files!r} must contain '{{fold}}', which is replaced "
                f"by the fold index."
            )
        return config

    def file_for(self, fold: int) -> str:
        assert self.files is not None
        return self.files.replace("{fold}", str(fold))


@dataclass(frozen=True)
class Fold:
    """The case_ids of one fold's training, inner validation and test sets."""

    cohort: str
    fold: int
    source: str
    seed: int
    train: list[str]
    validation: list[str]
    test: list[str]
    excluded: list[str] = field(default_factory=list)

    def split_of(self, case_ids: Sequence[str]) -> pd.Categorical:
        """Return each case_id's set ("train", "validation", "test" or "excluded")."""
        membership = {case_id: "excluded" for case_id in case_ids}
        for name in ("train", "validation", "test"):
            membership.update({case_id: name for case_id in getattr(self, name)})
        return pd.Categorical([membership[c] for c in case_ids], categories=SPLIT_NAMES)


def read_split_file(path: str | Path) -> tuple[list[str], list[str]]:
    """Return the (train, test) case_ids of a PORPOISE split file (columns train, val)."""
    table = pd.read_csv(path, dtype=str)
    missing = [column for column in ("train", "val") if column not in table.columns]
    if missing:
        raise SplitError(
            f"{path}: missing column(s) {missing}; a split file needs `train` and `val` "
            f"columns of case_id."
        )
    train = _unique(table["train"].dropna().str.strip())
    test = _unique(table["val"].dropna().str.strip())
    return train, test


def generate_folds(labels: pd.DataFrame, n_folds: int, seed: int) -> list[list[str]]:
    """Return the test case_ids of ``n_folds`` seeded folds stratified by ``event``."""
    case_ids = labels.index.to_numpy()
    events = labels["event"].to_numpy()
    if len(case_ids) < n_folds:
        raise SplitError(
            f"{n_folds} folds need at least {n_folds} patients, found {len(case_ids)}."
        )
    smallest = int(np.bincount(events, minlength=2).min())
    if smallest < n_folds:
        logger.warning(
            "only %d patients in the smaller event class, fewer than the %d folds; some test "
            "folds lack that class",
            smallest,
            n_folds,
        )
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [
        [str(case_ids[i]) for i in sorted(test)]
        for _, test in splitter.split(np.zeros(len(case_ids)), events)
    ]


def carve_inner_validation(
    train_ids: Sequence[str], events: pd.Series, fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split training case_ids into (train, validation), stratified by event, seeded.

    Stratification needs two patients per event class; otherwise the split is random and a
    warning is logged.
    """
    train_ids = list(train_ids)
    strata = events.loc[train_ids].to_numpy()
    stratify = strata if np.bincount(strata, minlength=2).min() >= 2 else None
    if stratify is None:
        logger.warning(
            "fewer than 2 training patients in an event class; inner validation is not stratified"
        )
    train, validation = train_test_split(
        np.asarray(train_ids, dtype=object),
        test_size=fraction,
        random_state=seed,
        stratify=stratify,
    )
    order = {case_id: i for i, case_id in enumerate(train_ids)}
    return sorted(train, key=order.get), sorted(validation, key=order.get)


def make_fold(labels: pd.DataFrame, config: SplitConfig, fold: int, *, cohort_name: str) -> Fold:
    """Build fold ``fold`` of a cohort from ``labels`` (index case_id, column ``event``).

    The inner validation split uses a seed derived from ``config.seed`` and the fold
    index, so folds differ but a rerun reproduces them. Each fold can be built on its own
    because generated folds are fully determined by the seed.
    """
    if not 0 <= fold < config.n_folds:
        raise SplitError(f"fold {fold} is out of range for n_folds {config.n_folds}.")
    known = [str(case_id) for case_id in labels.index]
    if config.files is None:
        source = "generated"
        test = generate_folds(labels, config.n_folds, config.seed)[fold]
        held_out = set(test)
        train = [case_id for case_id in known if case_id not in held_out]
    else:
        source = config.file_for(fold)
        train, test = read_split_file(source)
        _check_split_ids(train, test, set(known), source)

    assigned = set(train) | set(test)
    excluded = [case_id for case_id in known if case_id not in assigned]
    if excluded:
        logger.warning(
            "%s fold %d: %d patient(s) of the table are in neither train nor val of %s and "
            "are excluded from this fold, e.g. %s",
            cohort_name,
            fold,
            len(excluded),
            source,
            excluded[:5],
        )
    inner_seed = int(np.random.SeedSequence([config.seed, fold]).generate_state(1)[0])
    train, validation = carve_inner_validation(
        train, labels["event"], config.inner_validation_fraction, inner_seed
    )
    logger.info(
        "%s fold %d: %d train, %d validation, %d test, %d excluded",
        cohort_name,
        fold,
        len(train),
        len(validation),
        len(test),
        len(excluded),
    )
    return Fold(
        cohort=cohort_name,
        fold=fold,
        source=source,
        seed=config.seed,
        train=train,
        validation=validation,
        test=list(test),
        excluded=excluded,
    )


def make_folds(labels: pd.DataFrame, config: SplitConfig, *, cohort_name: str) -> list[Fold]:
    """Build every fold of a cohort; see ``make_fold``."""
    return [make_fold(labels, config, k, cohort_name=cohort_name) for k in range(config.n_folds)]


def write_fold_json(fold: Fold, path: str | Path) -> None:
    """Write a fold as JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asdict(fold), indent=1) + "\n")


def read_fold_json(path: str | Path) -> Fold:
    """Read a fold written by ``write_fold_json``."""
    with open(path) as handle:
        return Fold(**json.load(handle))


def build_fold_output(
    cohort_tsv: str | Path,
    output_path: str | Path,
    *,
    cohort_name: str,
    split_config: Mapping[str, Any],
    fold: int,
) -> Fold:
    """Write fold ``fold`` of a cohort as JSON, from its cohort.tsv and ``splits`` config."""
    from mmlego.cohort import read_cohort_labels

    fold_split = make_fold(
        read_cohort_labels(cohort_tsv),
        SplitConfig.from_mapping(split_config),
        fold,
        cohort_name=cohort_name,
    )
    write_fold_json(fold_split, output_path)
    return fold_split


def _check_split_ids(train: list[str], test: list[str], known: set[str], path: str) -> None:
    unknown = [case_id for case_id in [*train, *test] if case_id not in known]
    if unknown:
        raise SplitError(
            f"{path}: {len(unknown)} case_id(s) are not in the cohort table: "
            f"{_listed(unknown)}. Use the split files made for this table."
        )
    both = sorted(set(train) & set(test))
    if both:
        raise SplitError(
            f"{path}: {len(both)} case_id(s) are in both train and val: {_listed(both)}. "
            f"A patient must be in one set only."
        )


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _unique(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
