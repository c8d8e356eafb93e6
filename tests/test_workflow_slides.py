"""The slide branch end to end: slide stages on the real slides, then a slide modality
trained, cached and merged through the whole workflow.

The two real slides belong to no patient of any omics table, so the survival labels of
the test cohort below are INVENTED for this test only and mean nothing clinically. Its
patients' bags are disjoint parts of the real slides' patch features.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import manifest_entries

pytestmark = pytest.mark.slow

N_PARTS_PER_SLIDE = 10


def slide_config(shared_data, sheet) -> dict:
    return {
        "data": {"mirror": str(shared_data), "files": manifest_entries(shared_data, "wsi/")},
        "slides": {"sheet": str(sheet), "features": {"batch_size": 8}},
    }


@pytest.fixture(scope="module")
def slide_run(tmp_path_factory, shared_data):
    """Run the slide stages on both real slides, as the demo does."""
    from conftest import run_workflow

    workdir = tmp_path_factory.mktemp("slides")
    sheet = workdir / "slides.tsv"
    sheet.write_text(
        "slide_id\tcase_id\tpath\tmpp\n"
        "CMU-1-Small-Region\tCMU-1\tresources/wsi/CMU-1-Small-Region.svs\t\n"
        "TCGA-CR-7395-01A-01-TS1\tTCGA-CR-7395\tresources/wsi/TCGA-CR-7395-01A-01-TS1.svs\t0.5\n"
    )
    result = run_workflow(workdir, slide_config(shared_data, sheet))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_slide_stages_write_every_documented_output(slide_run):
    for slide in ("CMU-1-Small-Region", "TCGA-CR-7395-01A-01-TS1"):
        stage_dir = slide_run / "results/slides" / slide
        for name in ("info.json", "tissue.png", "tissue.geojson", "coords.h5"):
            assert (stage_dir / name).is_file(), name
        with h5py.File(slide_run / f"results/features/efficientnet_lite0/{slide}.h5") as handle:
            assert handle["features"].shape[1] == 1280
            assert handle["features"].shape[0] == handle["coords"].shape[0] > 0


def invented_cohort(slide_run, workdir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each real slide's features into parts, one part per invented patient.

    Returns the cohort table (INVENTED labels) and the slide sheet of the parts; the parts
    are written to workdir/precomputed as CLAM-layout files.
    """
    rng = np.random.default_rng(7)
    precomputed = workdir / "precomputed"
    precomputed.mkdir()
    sheet_rows, table_rows = [], []
    for source in ("CMU-1-Small-Region", "TCGA-CR-7395-01A-01-TS1"):
        with h5py.File(slide_run / f"results/features/efficientnet_lite0/{source}.h5") as handle:
            features, coords = handle["features"][()], handle["coords"][()]
        for part, rows in enumerate(np.array_split(np.arange(len(features)), N_PARTS_PER_SLIDE)):
            slide_id = f"{source}-part{part}"
            with h5py.File(precomputed / f"{slide_id}.h5", "w") as handle:
                handle.create_dataset("features", data=features[rows])
                handle.create_dataset("coords", data=coords[rows])
            case_id = f"INVENTED-{len(table_rows):02d}"
            sheet_rows.append({"slide_id": slide_id, "case_id": case_id, "path": f"parts/{slide_id}.svs"})
            table_rows.append({"case_id": case_id, "slide_id": slide_id})
    for _ in range(4):  # patients without any slide: they lack the slide modality
        table_rows.append({"case_id": f"INVENTED-{len(table_rows):02d}", "slide_id": np.nan})
    table = pd.DataFrame(table_rows)
    table["survival_months"] = rng.uniform(1, 120, len(table)).round(1)
    table["censorship"] = rng.permutation(np.arange(len(table)) % 2)
    table["age"] = rng.uniform(30, 85, len(table)).round()
    table["is_female"] = rng.integers(0, 2, len(table))
    return table, pd.DataFrame(sheet_rows)


def test_slide_modality_trains_and_merges(slide_run, shared_data, tmp_path, workflow_runner):
    table, sheet = invented_cohort(slide_run, tmp_path)
    table.to_csv(tmp_path / "invented_labels_cohort.csv", index=False)
    sheet.to_csv(tmp_path / "parts.tsv", sep="\t", index=False)
    config = {
        "cohorts": {
            "invented": {
                "table": str(tmp_path / "invented_labels_cohort.csv"),
                "modalities": ["slides", "clinical"],
                "splits": {"files": None, "n_folds": 2, "seed": 1},
            }
        },
        "modalities": {
            "slides": {"kind": "slides"},
            "clinical": {
                "columns": ["age", "is_female"],
                "transform": "clinical",
                "options": {"numeric": ["age"], "binary": ["is_female"], "categorical": []},
            },
        },
        "survival": {"n_bins": 2},
        "slides": {"sheet": str(tmp_path / "parts.tsv"), "precomputed_features": str(tmp_path / "precomputed")},
        "training": {"max_epochs": 3, "patience": 2, "batch_size": 8},
        "fuse": {"epochs": 1},
        "baselines": {"coxnet": {"n_alphas": 5}},
    }

    result = workflow_runner(tmp_path / "run", config)

    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "run/results/invented"
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    assert {"block_slides", "block_clinical", "legomerge", "legofuse"} <= set(metrics["method"])
    steps = metrics[(metrics["method"] == "legomerge") & (metrics["metric"] == "gradient_steps")]
    assert (steps["value"] == 0).all()
    with h5py.File(results / "latents/slides/fold_0.h5") as handle:
        cached = set(handle["case_id"][()].astype(str))
    assert cached == set(table.dropna(subset=["slide_id"])["case_id"])
    merged = pd.read_csv(results / "predictions/legomerge/fold_0.tsv", sep="\t")
    without_slides = set(table[table["slide_id"].isna()]["case_id"])
    test_ids = set(pd.read_json(results / "splits/fold_0.json", typ="series")["test"])
    assert without_slides & test_ids <= set(merged["case_id"])
