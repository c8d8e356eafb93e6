"""Per-fold modality AnnData: transforms fitted on training patients, storage and re-use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from mmlego.cohort import Cohort, load_cohort, read_table
from mmlego.modalities import EmptyModalityError, parse_modalities
from mmlego.omics import apply_fitted, build_modality, write_modality
from mmlego.splits import SplitConfig, make_fold
from mmlego.transforms import OPTION_DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECS = parse_modalities(
    yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())["modalities"]
)


def load(shared_data: Path, cohort: str) -> Cohort:
    return load_cohort(shared_data / "tcga_omics" / f"{cohort}_all_clean.csv.zip")


def porpoise_fold(shared_data: Path, cohort: Cohort, name: str, fold: int = 0):
    pattern = str(shared_data / f"splits/5foldcv/{name}/splits_{{fold}}.csv")
    return make_fold(cohort.labels(), SplitConfig(files=pattern), fold, cohort_name=name)


def with_patients(cohort: Cohort, patients: pd.DataFrame) -> Cohort:
    return replace(cohort, patients=patients)


def assert_same_fit(first: dict, second: dict, path: str = "uns") -> None:
    """Every stored parameter is equal (arrays exactly), key by key."""
    assert sorted(first) == sorted(second), path
    for key in first:
        a, b = first[key], second[key]
        if isinstance(a, dict):
            assert_same_fit(a, b, f"{path}.{key}")
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{path}.{key}")


@pytest.fixture(scope="module")
def blca(shared_data):
    return load(shared_data, "tcga_blca")


@pytest.fixture(scope="module")
def blca_fold(shared_data, blca):
    return porpoise_fold(shared_data, blca, "tcga_blca")


@pytest.fixture(scope="module")
def kirp(shared_data):
    return load(shared_data, "tcga_kirp")


@pytest.fixture(scope="module")
def kirp_fold(shared_data, kirp):
    return porpoise_fold(shared_data, kirp, "tcga_kirp")


# --- layout ------------------------------------------------------------------------------


def test_anndata_layout(blca, blca_fold):
    adata = build_modality(blca, blca_fold, SPECS["rna"])
    assert adata.obs_names.tolist() == blca.patients.index.tolist()
    assert list(adata.obs.columns) == [
        "split",
        "survival_months",
        "censorship",
        "event",
        "bin",
        "present",
    ]
    assert adata.obs["split"].cat.categories.tolist() == [
        "train",
        "validation",
        "test",
        "excluded",
    ]
    assert (adata.obs["split"] == "test").sum() == len(blca_fold.test)
    assert adata.X.dtype == np.float32
    assert adata.n_vars == 1000
    assert set(adata.var_names) <= set(blca.patients.columns)
    assert (adata.var["source_column"] == adata.var_names).all()
    assert adata.uns["cohort"] == "tcga_blca"
    assert adata.uns["fold"] == 0
    assert adata.uns["modality"] == "rna"
    assert adata.uns["transform"] == "signed_log_zscore"


def test_bins_cut_training_event_quartiles(blca, blca_fold):
    adata = build_modality(blca, blca_fold, SPECS["cnv"], n_bins=4)
    obs = adata.obs
    train = obs[obs["split"] == "train"]
    event_times = train.loc[train["event"] == 1, "survival_months"]
    expected = np.quantile(event_times, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(adata.uns["bin_edges"], expected)
    assert obs["bin"].between(0, 3).all()
    assert (obs.loc[obs["survival_months"] > expected[-1], "bin"] == 3).all()
    assert (obs.loc[obs["survival_months"] < expected[0], "bin"] == 0).all()
    # Quartiles of event times put a quarter of the training events in each bin.
    assert train.loc[train["event"] == 1, "bin"].value_counts().min() >= len(event_times) // 4 - 1


# --- transforms --------------------------------------------------------------------------


def test_rna_transform_tames_outliers(blca, blca_fold):
    raw = blca.patients.filter(regex="_rnaseq$").to_numpy()
    assert np.abs(raw).max() > 1e3
    adata = build_modality(blca, blca_fold, SPECS["rna"])
    assert np.isfinite(adata.X).all()
    assert np.abs(adata.X).max() < 20
    train = adata[adata.obs["split"] == "train"].X.astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0, ddof=1), 1, atol=1e-4)


def test_rna_drops_near_constant_genes(blca, blca_fold):
    spec = replace(SPECS["rna"], options={**SPECS["rna"].options, "max_features": None})
    adata = build_modality(blca, blca_fold, spec)
    train_rows = blca.patients.loc[blca_fold.train]
    for gene in adata.var_names:
        top_share = train_rows[gene].value_counts(normalize=True).iloc[0]
        assert top_share < 0.9, gene
    assert adata.n_vars < 1554


def test_kirp_age_imputed_by_training_median(kirp, kirp_fold):
    missing = kirp.patients.index[kirp.patients["age"].isna()]
    assert len(missing) == 2
    adata = build_modality(kirp, kirp_fold, SPECS["clinical"])
    assert np.isfinite(adata.X).all()
    assert adata.obs.loc[missing, "present"].all()

    train_ages = kirp.patients.loc[kirp_fold.train, "age"]
    median = np.nanmedian(train_ages)
    numeric = adata.uns["fit"]["numeric"]
    assert numeric["impute"][0] == median
    filled = train_ages.fillna(median)
    assert numeric["mean"][0] == pytest.approx(filled.mean())
    assert numeric["std"][0] == pytest.approx(filled.std(ddof=1))
    age = adata[missing, "age"].X.ravel()
    np.testing.assert_allclose(age, (median - filled.mean()) / filled.std(ddof=1), rtol=1e-6)


def test_clinical_one_hot_and_unseen_category(kirp, kirp_fold):
    patients = kirp.patients.copy()
    test_patient = kirp_fold.test[0]
    patients.loc[test_patient, "oncotree_code"] = "NEVER_SEEN"
    adata = build_modality(with_patients(kirp, patients), kirp_fold, SPECS["clinical"])
    assert adata.var_names.tolist() == ["age", "is_female", "oncotree_code=PRCC"]
    assert adata.var["source_column"].tolist() == ["age", "is_female", "oncotree_code"]
    assert adata[test_patient, "oncotree_code=PRCC"].X.item() == 0
    others = adata.obs_names != test_patient
    assert (adata[others, "oncotree_code=PRCC"].X == 1).all()


def test_mut_binary_min_count_and_center(blca, blca_fold):
    counts = blca.patients.loc[blca_fold.train].filter(regex="_mut$").sum()
    threshold = int(counts.quantile(0.5))
    spec = replace(SPECS["mut"], options={"min_count": threshold, "center": False})
    adata = build_modality(blca, blca_fold, spec)
    assert set(adata.var_names) == set(counts.index[counts >= threshold])
    assert set(np.unique(adata.X)) <= {0.0, 1.0}

    centred = build_modality(
        blca, blca_fold, replace(spec, options={"min_count": threshold, "center": True})
    )
    train = centred[centred.obs["split"] == "train"].X
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-6)


def test_absent_patients_are_zero_and_unfitted(blca, blca_fold):
    patients = blca.patients.copy()
    rna_columns = [c for c in patients.columns if c.endswith("_rnaseq")]
    absent = blca_fold.train[:3]
    patients.loc[absent, rna_columns] = np.nan
    adata = build_modality(with_patients(blca, patients), blca_fold, SPECS["rna"])
    assert not adata.obs.loc[absent, "present"].any()
    assert (adata[absent].X == 0).all()
    assert adata.obs["present"].sum() == len(patients) - 3
    assert adata.uns["n_fit_patients"] == len(blca_fold.train) - 3


def test_missing_cell_gets_training_median(blca, blca_fold):
    patients = blca.patients.copy()
    patient = blca_fold.test[0]
    reference = build_modality(blca, blca_fold, SPECS["cnv"])
    gene = reference.var_names[0]
    patients.loc[patient, gene] = np.nan
    adata = build_modality(with_patients(blca, patients), blca_fold, SPECS["cnv"])
    fit = adata.uns["fit"]
    position = list(fit["features"]).index(gene)
    expected = (fit["impute"][position] - fit["mean"][position]) / fit["std"][position]
    assert adata[patient, gene].X.item() == pytest.approx(expected, rel=1e-6)
    assert adata.obs.loc[patient, "present"]


def test_kirp_cnv_is_empty(kirp, kirp_fold):
    with pytest.raises(EmptyModalityError, match="'cnv'"):
        build_modality(kirp, kirp_fold, SPECS["cnv"])


def test_fold_with_unknown_patient_rejected(blca, blca_fold):
    fold = replace(blca_fold, test=blca_fold.test + ["TCGA-NOT-THERE"])
    with pytest.raises(ValueError, match="TCGA-NOT-THERE"):
        build_modality(blca, fold, SPECS["clinical"])


# --- fitting uses training patients only ------------------------------------------------


@pytest.mark.parametrize("modality", ["rna", "cnv", "mut", "clinical"])
def test_test_patients_do_not_change_fit(blca, blca_fold, modality):
    reference = build_modality(blca, blca_fold, SPECS[modality])
    patients = blca.patients.copy()
    held_out = blca_fold.test + blca_fold.validation
    numeric = patients.select_dtypes("number").columns.drop(["censorship"])
    patients.loc[held_out, numeric] = 1.0
    patients.loc[held_out, "survival_months"] = 999.0
    patients.loc[held_out, "censorship"] = 0
    patients.loc[held_out, "oncotree_code"] = "OTHER"
    changed = build_modality(with_patients(blca, patients), blca_fold, SPECS[modality])

    assert_same_fit(reference.uns["fit"], changed.uns["fit"])
    np.testing.assert_array_equal(reference.uns["bin_edges"], changed.uns["bin_edges"])
    assert reference.var_names.tolist() == changed.var_names.tolist()
    train = reference.obs["split"] == "train"
    np.testing.assert_array_equal(reference[train].X, changed[train].X)


def test_training_patients_do_change_fit(blca, blca_fold):
    """The counterpart of the test above, so that it can fail."""
    reference = build_modality(blca, blca_fold, SPECS["cnv"])
    patients = blca.patients.copy()
    patients.loc[blca_fold.train[:20], "survival_months"] = 0.5
    cnv_columns = [c for c in patients.columns if c.endswith("_cnv")]
    patients.loc[blca_fold.train[:20], cnv_columns] = 2
    changed = build_modality(with_patients(blca, patients), blca_fold, SPECS["cnv"])
    assert not np.array_equal(reference.uns["fit"]["mean"], changed.uns["fit"]["mean"])
    assert not np.array_equal(reference.uns["bin_edges"], changed.uns["bin_edges"])


# --- storage and re-use ------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["rna", "cnv", "mut", "clinical"])
def test_round_trip_reapplies_to_test(blca, blca_fold, tmp_path, modality):
    adata = build_modality(blca, blca_fold, SPECS[modality])
    path = tmp_path / f"{modality}.h5ad"
    write_modality(adata, path)
    stored = ad.read_h5ad(path)

    np.testing.assert_array_equal(stored.X, adata.X)
    test = stored.obs_names[stored.obs["split"] == "test"]
    again = apply_fitted(stored, blca.patients.loc[test])
    np.testing.assert_array_equal(again.X, stored[test].X)
    assert again.var_names.tolist() == stored.var_names.tolist()
    for column in ("present", "bin", "event", "survival_months"):
        np.testing.assert_array_equal(again.obs[column], stored.obs.loc[test, column])

    from_uns = apply_fitted(dict(stored.uns), blca.patients.loc[test[:5]])
    np.testing.assert_array_equal(from_uns.X, stored[test[:5]].X)


def test_reapply_to_slide_level_rows(shared_data, blca, blca_fold):
    adata = build_modality(blca, blca_fold, SPECS["clinical"])
    table = read_table(shared_data / "tcga_omics" / "tcga_blca_all_clean.csv.zip")
    rows = table[table["case_id"].isin(blca_fold.test[:10])]
    assert len(rows) > 10
    again = apply_fitted(adata, rows)
    np.testing.assert_array_equal(again.X, adata[again.obs_names].X)


def test_reapply_names_missing_columns(blca, blca_fold):
    adata = build_modality(blca, blca_fold, SPECS["mut"])
    patients = blca.patients.drop(columns=[adata.var_names[0]])
    with pytest.raises(ValueError, match=adata.var_names[0]):
        apply_fitted(adata, patients.loc[blca_fold.test])


# --- config ------------------------------------------------------------------------------


def test_schema_defaults_match_transform_defaults():
    schema = yaml.safe_load((REPO_ROOT / "workflow/schemas/config.schema.yaml").read_text())
    modality = schema["properties"]["modalities"]["additionalProperties"]
    for branch in modality["allOf"][1:]:
        name = branch["if"]["properties"]["transform"]["const"]
        options = branch["then"]["properties"]["options"]["properties"]
        assert {key: value["default"] for key, value in options.items()} == OPTION_DEFAULTS[name]
