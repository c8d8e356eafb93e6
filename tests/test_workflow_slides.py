"""The slide branch end to end: slide stages on the real slides, then a slide modality
trained, cached and merged through the whole workflow.

The two real slides belong to no patient of any omics table, so the survival labels of
the test cohort below are INVENTED for this test only and mean nothing clinically. Its
patients' bags are disjoint parts of the real slides' patch features.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import CMU, manifest_entries, write_blank_slide, write_corrupt_slide, write_truncated_slide

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


def invented_cohort_config(tmp_path, sheet, **slides_options) -> dict:
    """Build the config of the invented-label cohort: slides and clinical, 2 folds, short training."""
    return {
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
        "slides": {"sheet": str(sheet), **slides_options},
        "training": {"max_epochs": 3, "patience": 2, "batch_size": 8},
        "fuse": {"epochs": 1},
        "baselines": {"coxnet": {"n_alphas": 5}},
    }


def test_slide_modality_trains_and_merges(slide_run, shared_data, tmp_path, workflow_runner):
    table, sheet = invented_cohort(slide_run, tmp_path)
    table.to_csv(tmp_path / "invented_labels_cohort.csv", index=False)
    sheet.to_csv(tmp_path / "parts.tsv", sep="\t", index=False)
    config = invented_cohort_config(
        tmp_path, tmp_path / "parts.tsv", precomputed_features=str(tmp_path / "precomputed")
    )

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


def seed_part_outputs(slide_run, workdir, precomputed, sheet) -> None:
    """Give each part of ``invented_cohort`` finished slide-stage outputs in ``workdir``.

    A part's stage files are its source slide's, and its features file is its share of
    the source's patches. They are written after the slide files, so Snakemake finds them
    up to date and runs the slide stages only for the slides added to the sheet.
    """
    for slide_id, source in zip(sheet["slide_id"], sheet["source"]):
        stage_dir = workdir / "results/slides" / slide_id
        stage_dir.mkdir(parents=True)
        for name in ("info.json", "tissue.png", "tissue.geojson", "coords.h5"):
            shutil.copy(slide_run / "results/slides" / source / name, stage_dir / name)
        features_dir = workdir / "results/features/efficientnet_lite0"
        features_dir.mkdir(parents=True, exist_ok=True)
        with h5py.File(slide_run / f"results/features/efficientnet_lite0/{source}.h5") as handle:
            attrs = dict(handle.attrs)
        with h5py.File(precomputed / f"{slide_id}.h5") as part, h5py.File(features_dir / f"{slide_id}.h5", "w") as out:
            out.attrs.update(attrs)
            out.create_dataset("features", data=part["features"][()])
            out.create_dataset("coords", data=part["coords"][()])


def test_failed_slide_policy(slide_run, shared_data, tmp_path, workflow_runner):
    """Under the default policy the failing slides' jobs fail and --keep-going finishes the
    others. Under skip the cohort completes, and the patient whose only slide failed lacks
    the slide modality."""
    table, sheet = invented_cohort(slide_run, tmp_path)
    source_mpp = {"CMU-1-Small-Region": "", "TCGA-CR-7395-01A-01-TS1": 0.5}
    sheet["source"] = sheet["slide_id"].str.replace(r"-part\d+$", "", regex=True)
    sheet["path"] = [str(shared_data / "wsi" / f"{source}.svs") for source in sheet["source"]]
    sheet["mpp"] = [source_mpp[source] for source in sheet["source"]]
    workdir = tmp_path / "run"
    seed_part_outputs(slide_run, workdir, tmp_path / "precomputed", sheet)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    truncated = write_truncated_slide(shared_data / "wsi" / CMU, damaged / "truncated.svs")
    corrupt = write_corrupt_slide(shared_data / "wsi" / CMU, damaged / "corrupt.svs")
    blank = write_blank_slide(damaged / "blank.tif")
    with_slides = table.dropna(subset=["slide_id"])
    failed_only = f"INVENTED-{len(table):02d}"
    blank_only = table.loc[table["slide_id"].isna(), "case_id"].iloc[0]
    # A slide without tissue, processed in the first run while the damaged slides fail.
    table.loc[table["case_id"] == blank_only, "slide_id"] = "blank-slide"
    extra_rows = pd.DataFrame([
        # A second slide of a patient with patches. The corrupt copy fails at the tissue stage.
        {**table.iloc[0].to_dict(), "slide_id": "corrupt-slide"},
        # A patient whose only slide is truncated, so it fails at the inspect stage.
        {"case_id": failed_only, "slide_id": "truncated-slide", "survival_months": 42.0,
         "censorship": 0, "age": 60.0, "is_female": 1},
    ])
    table = pd.concat([table, extra_rows], ignore_index=True)
    added = pd.DataFrame([
        {"slide_id": "corrupt-slide", "case_id": table.iloc[0]["case_id"], "path": str(corrupt)},
        {"slide_id": "truncated-slide", "case_id": failed_only, "path": str(truncated)},
        {"slide_id": "blank-slide", "case_id": blank_only, "path": str(blank)},
    ])
    sheet = pd.concat([sheet.drop(columns="source"), added], ignore_index=True)
    table.to_csv(tmp_path / "invented_labels_cohort.csv", index=False)
    sheet.to_csv(tmp_path / "slides.tsv", sep="\t", index=False)
    config = invented_cohort_config(tmp_path, tmp_path / "slides.tsv", features={"backend": "eager"})
    features = workdir / "results/features/efficientnet_lite0"
    slides = workdir / "results/slides"

    targets = [f"results/features/efficientnet_lite0/{slide}.h5"
               for slide in ("blank-slide", "corrupt-slide", "truncated-slide")]
    result = workflow_runner(workdir, config, *targets, extra_args=["--keep-going"])

    assert result.returncode != 0
    assert (features / "blank-slide.h5").is_file()
    # A failed prepare_slide job keeps none of its outputs, info.json included.
    for slide in ("truncated-slide", "corrupt-slide"):
        for name in ("info.json", "tissue.png", "tissue.geojson", "coords.h5"):
            assert not (slides / slide / name).exists(), f"{slide}/{name}"
    assert not (features / "corrupt-slide.h5").exists()
    truncated_log = (workdir / "logs/results/slides/truncated-slide/coords.h5.log").read_text()
    assert str(truncated) in truncated_log
    assert "Unsupported or missing image file" in truncated_log
    corrupt_log = (workdir / "logs/results/slides/corrupt-slide/coords.h5.log").read_text()
    assert "Inspect stage of slide corrupt-slide finished" in corrupt_log
    assert "Not a JPEG file" in corrupt_log

    config["slides"]["on_failure"] = "skip"
    result = workflow_runner(workdir, config)

    assert result.returncode == 0, result.stderr[-5000:]
    with h5py.File(features / "truncated-slide.h5") as handle:
        assert handle.attrs["status"] == "failed"
        assert handle.attrs["failed_stage"] == "inspect"
        assert handle["features"].shape == (0, 1280)
    with h5py.File(features / "corrupt-slide.h5") as handle:
        assert handle.attrs["failed_stage"] == "tissue"
    truncated_info = json.loads((slides / "truncated-slide/info.json").read_text())
    assert truncated_info["failed_stage"] == "inspect"
    corrupt_info = json.loads((slides / "corrupt-slide/info.json").read_text())
    assert corrupt_info["status"] == "ok"
    corrupt_tissue = json.loads((slides / "corrupt-slide/tissue.geojson").read_text())
    assert corrupt_tissue["properties"]["failed_stage"] == "tissue"
    with h5py.File(slides / "corrupt-slide/coords.h5") as handle:
        assert handle.attrs["failed_stage"] == "tissue"
    results = workdir / "results/invented"
    cohort = pd.read_csv(results / "cohort.tsv", sep="\t").set_index("case_id")
    assert cohort.loc[failed_only, "has_slides"]  # the table lists a slide for the patient
    for fold in (0, 1):
        with h5py.File(results / f"latents/slides/fold_{fold}.h5") as handle:
            cached = set(handle["case_id"][()].astype(str))
        assert cached == set(with_slides["case_id"])
        assert failed_only not in cached
        assert blank_only not in cached
    test_ids = set()
    merged = set()
    for fold in (0, 1):
        test_ids |= set(pd.read_json(results / f"splits/fold_{fold}.json", typ="series")["test"])
        merged |= set(pd.read_csv(results / f"predictions/legomerge/fold_{fold}.tsv", sep="\t")["case_id"])
    assert failed_only in test_ids
    assert failed_only in merged
    provenance = json.loads((results / "provenance.json").read_text())
    failed = {record["slide_id"]: record for record in provenance["failed_slides"]}
    assert set(failed) == {"truncated-slide", "corrupt-slide"}
    assert failed["truncated-slide"]["case_id"] == failed_only
    assert failed["corrupt-slide"]["failed_stage"] == "tissue"
    metrics = pd.read_csv(results / "metrics.tsv", sep="\t")
    assert {"block_slides", "legomerge"} <= set(metrics["method"])
