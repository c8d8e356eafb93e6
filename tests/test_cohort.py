"""Cohort tables: reading, validation, collapsing to patients and empty modalities."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import manifest_entries

from mmlego.cohort import (
    CohortTableError,
    build_cohort_outputs,
    cohort_from_table,
    load_cohort,
    read_cohort_labels,
    read_table,
)
from mmlego.modalities import (
    EmptyModalityError,
    ModalityConfigError,
    check_cohort_modalities,
    parse_modalities,
    select_columns,
)

MODALITIES = {
    "rna": {"suffix": "_rnaseq", "transform": "signed_log_zscore"},
    "cnv": {"suffix": "_cnv", "transform": "zscore"},
    "mut": {"suffix": "_mut", "transform": "binary"},
    "clinical": {
        "columns": ["age", "is_female", "oncotree_code"],
        "transform": "clinical",
        "options": {"numeric": ["age"], "binary": ["is_female"], "categorical": ["oncotree_code"]},
    },
}


@pytest.fixture(scope="module")
def kirp_path(shared_data):
    return shared_data / "tcga_omics" / "tcga_kirp_all_clean.csv.zip"


@pytest.fixture(scope="module")
def kirp(kirp_path):
    return load_cohort(kirp_path)


def small_table(**changes) -> pd.DataFrame:
    """Five slide rows of four patients; patient P2 has two identical rows."""
    table = pd.DataFrame(
        {
            "case_id": ["P1", "P2", "P2", "P3", "P4"],
            "slide_id": ["s1", "s2a", "s2b", "s3", "s4"],
            "survival_months": [10.0, 5.5, 5.5, 30.0, 2.0],
            "censorship": [0, 1, 1, 0, 1],
            "age": [60.0, np.nan, np.nan, 70.0, 50.0],
            "GENE1_rnaseq": [0.1, -0.3, -0.3, 2.0, 1.0],
            "GENE1_cnv": [0, 1, 1, -1, 2],
        }
    )
    for column, values in changes.items():
        table[column] = values
    return table


# --- real data ---------------------------------------------------------------------------


def test_kirp_collapses_to_patients(kirp):
    assert len(kirp.patients) == 260
    assert kirp.patients.index.is_unique
    assert sum(len(slides) for slides in kirp.slides.values()) == 284
    assert "slide_id" not in kirp.patients.columns


def test_kirp_labels_are_patient_level(kirp):
    labels = kirp.labels()
    assert int(labels["event"].sum()) == 40
    assert set(labels["censorship"].unique()) <= {0, 1}
    assert (labels["event"] == 1 - labels["censorship"]).all()


def test_kirp_cnv_empty_raises_by_default(kirp):
    specs = parse_modalities(MODALITIES)
    with pytest.raises(EmptyModalityError) as error:
        check_cohort_modalities(kirp, list(specs.values()), cohort_name="tcga_kirp")
    message = str(error.value)
    assert "'cnv'" in message
    assert "suffix: '_cnv'" in message
    assert "tcga_kirp" in message


def test_kirp_cnv_skipped_by_cohort_setting(kirp, caplog):
    specs = parse_modalities(MODALITIES)
    with caplog.at_level(logging.WARNING):
        report = check_cohort_modalities(
            kirp, list(specs.values()), cohort_name="tcga_kirp", on_empty="skip"
        )
    assert report.effective == ["rna", "mut", "clinical"]
    assert list(report.skipped) == ["cnv"]
    assert not report.presence["cnv"].any()
    assert any("cnv" in record.getMessage() for record in caplog.records)


def test_kirp_cnv_skipped_by_modality_setting(kirp):
    specs = parse_modalities({**MODALITIES, "cnv": {**MODALITIES["cnv"], "on_empty": "skip"}})
    report = check_cohort_modalities(kirp, list(specs.values()), cohort_name="tcga_kirp")
    assert "cnv" not in report.effective
    assert "cnv" in report.skipped


def test_cohort_setting_overrides_modality_skip(kirp):
    specs = parse_modalities({**MODALITIES, "cnv": {**MODALITIES["cnv"], "on_empty": "skip"}})
    with pytest.raises(EmptyModalityError):
        check_cohort_modalities(
            kirp, list(specs.values()), cohort_name="tcga_kirp", on_empty="error"
        )


def test_kirp_cohort_outputs(kirp_path, shared_data, tmp_path):
    cohort_config = {
        "table": str(kirp_path),
        "modalities": ["rna", "cnv", "mut", "clinical"],
        "on_empty": "skip",
        "splits": {
            "files": str(shared_data / "splits/5foldcv/tcga_kirp/splits_{fold}.csv"),
            "n_folds": 5,
        },
    }
    written = build_cohort_outputs(
        kirp_path,
        tmp_path,
        cohort_name="tcga_kirp",
        cohort_config=cohort_config,
        modalities_config=MODALITIES,
    )

    summary = pd.read_csv(written["cohort"], sep="\t", dtype={"case_id": str})
    assert len(summary) == 260
    assert list(summary.columns[:5]) == [
        "case_id",
        "survival_months",
        "censorship",
        "event",
        "slide_ids",
    ]
    assert summary["has_rna"].all()
    assert not summary["has_cnv"].any()
    assert summary["slide_ids"].str.split(";").map(len).sum() == 284

    modalities = json.loads(written["modalities"].read_text())
    assert modalities["modalities"] == ["rna", "mut", "clinical"]
    assert list(modalities["skipped"]) == ["cnv"]

    assert sorted(name for name in written if name.startswith("fold_")) == [
        f"fold_{k}" for k in range(5)
    ]
    labels = read_cohort_labels(written["cohort"])
    assert labels.index.tolist() == summary["case_id"].tolist()
    assert labels["event"].sum() == 40


# --- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.zip", ".parquet"])
def test_read_table_formats(tmp_path, suffix):
    table = small_table()
    path = tmp_path / f"cohort{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".tsv":
        table.to_csv(path, sep="\t")
    elif suffix == ".csv.zip":
        table.to_csv(path, compression={"method": "zip", "archive_name": "cohort.csv"})
    else:
        table.to_csv(path)

    read = read_table(path)
    assert list(read.columns) == list(table.columns)
    cohort = load_cohort(path)
    assert cohort.patients.index.tolist() == ["P1", "P2", "P3", "P4"]
    assert cohort.slides["P2"] == ("s2a", "s2b")
    assert cohort.patients.loc["P3", "GENE1_rnaseq"] == 2.0


def test_read_table_rejects_unknown_format(tmp_path):
    path = tmp_path / "cohort.xlsx"
    path.write_text("x")
    with pytest.raises(CohortTableError, match="unsupported cohort table format"):
        read_table(path)


# --- invalid tables ----------------------------------------------------------------------


def test_negative_time_names_row():
    table = small_table(survival_months=[10.0, 5.5, 5.5, -1.0, 2.0])
    with pytest.raises(CohortTableError) as error:
        cohort_from_table(table)
    message = str(error.value)
    assert "survival_months must be finite and >= 0" in message
    assert "row 4" in message
    assert "'P3'" in message


def test_missing_time_is_invalid():
    table = small_table(survival_months=[10.0, 5.5, 5.5, np.nan, np.inf])
    with pytest.raises(CohortTableError) as error:
        cohort_from_table(table)
    assert "row 4" in str(error.value)
    assert "row 5" in str(error.value)


def test_censorship_two_names_row():
    table = small_table(censorship=[0, 1, 1, 2, 1])
    with pytest.raises(CohortTableError) as error:
        cohort_from_table(table)
    message = str(error.value)
    assert "censorship must be 0 (event) or 1 (censored)" in message
    assert "row 4 (case_id 'P3', censorship 2)" in message


def test_empty_case_id_names_row():
    table = small_table(case_id=["P1", "P2", "P2", " ", "P4"])
    with pytest.raises(CohortTableError, match=r"empty case_id in row 4"):
        cohort_from_table(table)


def test_missing_label_column():
    table = small_table().drop(columns="censorship")
    with pytest.raises(CohortTableError, match="missing required column"):
        cohort_from_table(table)


def test_conflicting_duplicates_name_patient_and_columns():
    table = small_table()
    table.loc[2, "GENE1_rnaseq"] = 9.0
    table.loc[2, "age"] = 41.0
    with pytest.raises(CohortTableError) as error:
        cohort_from_table(table)
    message = str(error.value)
    assert "P2: age, GENE1_rnaseq" in message
    assert "P1" not in message


def test_conflicting_labels_are_reported():
    table = small_table(survival_months=[10.0, 5.5, 6.0, 30.0, 2.0])
    with pytest.raises(CohortTableError, match="P2: survival_months"):
        cohort_from_table(table)


def test_missing_values_in_duplicates_count_as_equal():
    cohort = cohort_from_table(small_table())
    assert np.isnan(cohort.patients.loc["P2", "age"])
    assert len(cohort.patients) == 4


def test_one_row_per_patient_without_slide_column():
    cohort = cohort_from_table(small_table().drop(columns="slide_id").drop_duplicates("case_id"))
    assert cohort.slides["P1"] == ()
    assert len(cohort.patients) == 4


# --- selectors ---------------------------------------------------------------------------


def test_selectors_pick_columns():
    columns = small_table().columns
    specs = parse_modalities(
        {
            "a": {"suffix": "_rnaseq", "transform": "zscore"},
            "b": {"regex": "^GENE1_", "transform": "zscore"},
            "c": {"columns": ["GENE1_cnv"], "transform": "zscore"},
        }
    )
    assert select_columns(specs["a"], columns) == ["GENE1_rnaseq"]
    assert select_columns(specs["b"], columns) == ["GENE1_rnaseq", "GENE1_cnv"]
    assert select_columns(specs["c"], columns) == ["GENE1_cnv"]


def test_selector_rejects_label_columns():
    spec = parse_modalities({"bad": {"regex": "months", "transform": "zscore"}})["bad"]
    with pytest.raises(ModalityConfigError, match="survival_months"):
        select_columns(spec, small_table().columns)


def test_columns_selector_rejects_partial_typo():
    spec = parse_modalities({"c": {"columns": ["age", "agee"], "transform": "zscore"}})["c"]
    with pytest.raises(ModalityConfigError, match="agee"):
        select_columns(spec, small_table().columns)


def test_modality_needs_one_selector():
    with pytest.raises(ModalityConfigError, match="exactly one column selector"):
        parse_modalities({"x": {"suffix": "_a", "regex": "b", "transform": "zscore"}})
    with pytest.raises(ModalityConfigError, match="exactly one column selector"):
        parse_modalities({"x": {"transform": "zscore"}})


def test_slides_modality_takes_no_selector():
    spec = parse_modalities({"wsi": {"kind": "slides"}})["wsi"]
    assert spec.kind == "slides"
    with pytest.raises(ModalityConfigError, match="slides modality"):
        parse_modalities({"wsi": {"kind": "slides", "suffix": "_x"}})


def test_slides_presence_follows_slide_ids():
    cohort = cohort_from_table(small_table(slide_id=["s1", "s2a", "s2b", None, "s4"]))
    spec = parse_modalities({"wsi": {"kind": "slides"}})["wsi"]
    report = check_cohort_modalities(cohort, [spec], cohort_name="small")
    assert report.presence["wsi"].to_dict() == {"P1": True, "P2": True, "P3": False, "P4": True}


def test_unknown_transform_option_rejected():
    with pytest.raises(ValueError, match="min_cout"):
        parse_modalities(
            {"m": {"suffix": "_mut", "transform": "binary", "options": {"min_cout": 3}}}
        )


# --- workflow ----------------------------------------------------------------------------


def test_workflow_skips_empty_kirp_cnv(shared_data, workflow_runner, tmp_path):
    """The cohort checkpoint records the skip and the DAG requests no cnv AnnData."""
    config = {
        "data": {
            "mirror": str(shared_data),
            "files": manifest_entries(shared_data, "tcga_omics/tcga_kirp"),
        },
        "cohorts": {
            "tcga_kirp": {
                "table": "resources/tcga_omics/tcga_kirp_all_clean.csv.zip",
                "modalities": ["cnv", "mut"],
                "on_empty": "skip",
                "splits": {"files": None, "n_folds": 2},
            }
        },
        "modalities": {key: MODALITIES[key] for key in ("cnv", "mut")},
    }
    run = workflow_runner(tmp_path, config, "results/tcga_kirp/modalities.json")
    assert run.returncode == 0, run.stderr[-3000:]
    kept = json.loads((tmp_path / "results/tcga_kirp/modalities.json").read_text())
    assert kept["modalities"] == ["mut"]

    dry_run = workflow_runner(tmp_path, config, extra_args=["-n"])
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    listing = dry_run.stdout + dry_run.stderr
    assert "results/tcga_kirp/modalities/mut/fold_1.h5ad" in listing
    assert "modalities/cnv" not in listing
