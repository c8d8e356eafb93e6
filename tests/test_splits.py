"""Patient-level folds: generated and PORPOISE folds, inner validation, invalid split files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from mmlego.cohort import load_cohort, write_cohort_tsv
from mmlego.splits import (
    SplitConfig,
    SplitError,
    build_fold_output,
    make_fold,
    make_folds,
    read_fold_json,
    write_fold_json,
)

COHORTS = ["tcga_blca", "tcga_brca", "tcga_kirp", "tcga_ucec"]


@pytest.fixture(scope="module")
def blca_labels(shared_data):
    return load_cohort(shared_data / "tcga_omics" / "tcga_blca_all_clean.csv.zip").labels()


def synthetic_labels(n_patients: int = 100, n_events: int = 30) -> pd.DataFrame:
    events = np.zeros(n_patients, dtype=np.int64)
    events[:n_events] = 1
    index = pd.Index([f"P{i:03d}" for i in range(n_patients)], name="case_id")
    return pd.DataFrame(
        {
            "survival_months": np.arange(n_patients, dtype=float) + 1,
            "censorship": 1 - events,
            "event": events,
        },
        index=index,
    )


def write_split_file(path, train, val):
    length = max(len(train), len(val))
    pd.DataFrame(
        {
            "train": list(train) + [None] * (length - len(train)),
            "val": list(val) + [None] * (length - len(val)),
        }
    ).to_csv(path)


def assert_disjoint_sets(fold):
    train, validation, test = set(fold.train), set(fold.validation), set(fold.test)
    assert not train & validation
    assert not train & test
    assert not validation & test


# --- generated folds ---------------------------------------------------------------------


def test_generated_folds_partition_patients():
    labels = synthetic_labels()
    folds = make_folds(labels, SplitConfig(n_folds=5, seed=3), cohort_name="synthetic")
    tested = [case_id for fold in folds for case_id in fold.test]
    assert sorted(tested) == sorted(labels.index)
    for fold in folds:
        assert_disjoint_sets(fold)
        assigned = set(fold.train) | set(fold.validation) | set(fold.test)
        assert assigned == set(labels.index)
        assert fold.excluded == []


def test_generated_folds_stratify_events():
    labels = synthetic_labels()
    folds = make_folds(labels, SplitConfig(n_folds=5, seed=0), cohort_name="synthetic")
    for fold in folds:
        assert labels.loc[fold.test, "event"].sum() == 6
        assert labels.loc[fold.validation, "event"].sum() in (4, 5)


def test_generated_folds_follow_seed():
    labels = synthetic_labels()
    first = make_folds(labels, SplitConfig(seed=1), cohort_name="synthetic")
    again = make_folds(labels, SplitConfig(seed=1), cohort_name="synthetic")
    other = make_folds(labels, SplitConfig(seed=2), cohort_name="synthetic")
    assert [f.test for f in first] == [f.test for f in again]
    assert [f.validation for f in first] == [f.validation for f in again]
    assert [f.test for f in first] != [f.test for f in other]


def test_single_generated_fold_equals_full_run():
    labels = synthetic_labels()
    config = SplitConfig(n_folds=4, seed=7)
    folds = make_folds(labels, config, cohort_name="synthetic")
    assert make_fold(labels, config, 2, cohort_name="synthetic") == folds[2]


def test_inner_validation_fraction():
    labels = synthetic_labels(n_patients=200, n_events=50)
    fold = make_fold(
        labels, SplitConfig(n_folds=5, inner_validation_fraction=0.25), 0, cohort_name="s"
    )
    assert len(fold.validation) == 40
    assert len(fold.train) == 120


def test_generated_folds_need_two_folds():
    with pytest.raises(SplitError, match="n_folds >= 2"):
        SplitConfig.from_mapping({"files": None, "n_folds": 1})


# --- PORPOISE folds ----------------------------------------------------------------------


def test_porpoise_blca_folds(shared_data, blca_labels):
    pattern = str(shared_data / "splits/5foldcv/tcga_blca/splits_{fold}.csv")
    folds = make_folds(blca_labels, SplitConfig(files=pattern), cohort_name="tcga_blca")
    for fold in folds:
        assert_disjoint_sets(fold)
        assert fold.excluded == []
        assert fold.source.endswith(f"splits_{fold.fold}.csv")
        n_training = len(fold.train) + len(fold.validation)
        assert len(fold.validation) == pytest.approx(0.2 * n_training, abs=1)
        validation_rate = blca_labels.loc[fold.validation, "event"].mean()
        training_rate = blca_labels.loc[fold.train, "event"].mean()
        assert abs(validation_rate - training_rate) < 0.05


@pytest.mark.parametrize("cohort", COHORTS)
def test_porpoise_folds_cover_patients_once(shared_data, cohort):
    """For all four PORPOISE cohorts, the val columns partition the patients of the table."""
    labels = load_cohort(shared_data / f"tcga_omics/{cohort}_all_clean.csv.zip").labels()
    pattern = str(shared_data / f"splits/5foldcv/{cohort}/splits_{{fold}}.csv")
    folds = make_folds(labels, SplitConfig(files=pattern), cohort_name=cohort)
    tested = [case_id for fold in folds for case_id in fold.test]
    assert len(tested) == len(set(tested))
    assert set(tested) == set(labels.index)


# --- invalid split files -----------------------------------------------------------------


def test_split_ids_missing_from_table(tmp_path):
    labels = synthetic_labels(n_patients=10, n_events=4)
    path = tmp_path / "splits_0.csv"
    write_split_file(path, ["P000", "P001", "GHOST-1"], ["P002", "GHOST-2"])
    with pytest.raises(SplitError) as error:
        make_fold(
            labels,
            SplitConfig(files=str(tmp_path / "splits_{fold}.csv"), n_folds=1),
            0,
            cohort_name="s",
        )
    message = str(error.value)
    assert "GHOST-1" in message
    assert "GHOST-2" in message
    assert "not in the cohort table" in message


def test_patient_in_train_and_val(tmp_path):
    labels = synthetic_labels(n_patients=10, n_events=4)
    write_split_file(tmp_path / "splits_0.csv", ["P000", "P001", "P002"], ["P002", "P003"])
    with pytest.raises(SplitError, match=r"in both train and val: P002"):
        make_fold(
            labels,
            SplitConfig(files=str(tmp_path / "splits_{fold}.csv"), n_folds=1),
            0,
            cohort_name="s",
        )


def test_unlisted_patients_are_excluded(tmp_path, caplog):
    labels = synthetic_labels(n_patients=20, n_events=8)
    listed = list(labels.index[:18])
    write_split_file(tmp_path / "splits_0.csv", listed[:14], listed[14:])
    config = SplitConfig(files=str(tmp_path / "splits_{fold}.csv"), n_folds=1)
    with caplog.at_level(logging.WARNING):
        fold = make_fold(labels, config, 0, cohort_name="s")
    assert fold.excluded == ["P018", "P019"]
    assert "P018" not in fold.train + fold.validation + fold.test
    assert any("2 patient(s)" in record.getMessage() for record in caplog.records)


def test_split_file_needs_train_and_val(tmp_path):
    pd.DataFrame({"train": ["P000"], "test": ["P001"]}).to_csv(tmp_path / "splits_0.csv")
    config = SplitConfig(files=str(tmp_path / "splits_{fold}.csv"), n_folds=1)
    with pytest.raises(SplitError, match=r"missing column\(s\) \['val'\]"):
        make_fold(synthetic_labels(10, 4), config, 0, cohort_name="s")


# --- fold files --------------------------------------------------------------------------


def test_fold_json_round_trip(tmp_path):
    fold = make_fold(synthetic_labels(), SplitConfig(seed=5), 1, cohort_name="synthetic")
    path = tmp_path / "fold_1.json"
    write_fold_json(fold, path)
    content = json.loads(path.read_text())
    for key in ("cohort", "fold", "source", "seed", "train", "validation", "test"):
        assert key in content
    assert content["source"] == "generated"
    assert read_fold_json(path) == fold


def test_fold_output_from_cohort_tsv(tmp_path):
    labels = synthetic_labels()
    summary = labels.copy()
    summary["slide_ids"] = ""
    write_cohort_tsv(summary, tmp_path / "cohort.tsv")
    fold = build_fold_output(
        tmp_path / "cohort.tsv",
        tmp_path / "fold_0.json",
        cohort_name="synthetic",
        split_config={"files": None, "n_folds": 5, "seed": 0, "inner_validation_fraction": 0.2},
        fold=0,
    )
    assert fold == make_fold(labels, SplitConfig(), 0, cohort_name="synthetic")
    assert read_fold_json(tmp_path / "fold_0.json") == fold
