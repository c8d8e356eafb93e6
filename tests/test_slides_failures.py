"""The slide failure policy on damaged copies of a real slide: records under skip, errors under error."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmlego.slides.encoders import build_encoder
from mmlego.slides.failures import (
    SlideFailedError,
    failed_slides,
    run_features,
    run_inspect,
    run_tiling,
    run_tissue,
    write_failed_features,
)
from mmlego.slides.features import FeatureSettings, write_features
from mmlego.slides.inspect import MissingResolutionError, SlideReadError
from mmlego.stages.inputs import load_slide_modality
from mmlego.stages.report import write_provenance

from conftest import CMU, TCGA, write_corrupt_slide, write_truncated_slide

# Eager torch needs no ONNX export, which keeps the feature stage of these tests short.
EAGER = FeatureSettings(backend="eager", device="cpu", batch_size=4)
OPENSLIDE_OPEN_REASON = "Unsupported or missing image file"
OPENSLIDE_TILE_REASON = "Not a JPEG file"


@pytest.fixture
def truncated(wsi, tmp_path):
    return write_truncated_slide(wsi / CMU, tmp_path / "truncated.svs")


@pytest.fixture
def corrupt(wsi, tmp_path):
    return write_corrupt_slide(wsi / CMU, tmp_path / "corrupt.svs")


def stage_paths(folder):
    return {
        "info": folder / "info.json",
        "png": folder / "tissue.png",
        "geojson": folder / "tissue.geojson",
        "coords": folder / "coords.h5",
        "features": folder / "features.h5",
    }


def run_stages(slide, folder, *, slide_id, on_failure, sheet_mpp=None):
    """Run the four slide stages as the workflow does; return their output paths."""
    paths = stage_paths(folder)
    run_inspect(slide, paths["info"], slide_id=slide_id, sheet_mpp=sheet_mpp, on_failure=on_failure)
    run_tissue(slide, info_path=paths["info"], png_path=paths["png"], geojson_path=paths["geojson"],
               on_failure=on_failure)
    run_tiling(slide, info_path=paths["info"], geojson_path=paths["geojson"], coords_path=paths["coords"],
               on_failure=on_failure)
    run_features(slide, coords_path=paths["coords"], output_path=paths["features"], slide_id=slide_id,
                 settings=EAGER, on_failure=on_failure)
    return paths


def h5_attrs(path):
    with h5py.File(path, "r") as handle:
        return dict(handle.attrs)


def test_truncated_slide_skipped_with_empty_outputs(truncated, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmlego.slides.failures"):
        paths = run_stages(truncated, tmp_path, slide_id="truncated-slide", on_failure="skip")

    info = json.loads(paths["info"].read_text())
    assert info["status"] == "failed"
    assert info["failed_stage"] == "inspect"
    assert info["error_type"] == "SlideReadError"
    assert info["slide_path"] == str(truncated)
    assert OPENSLIDE_OPEN_REASON in info["error"]
    geojson = json.loads(paths["geojson"].read_text())
    assert geojson["features"] == []
    assert geojson["properties"]["status"] == "failed"
    assert geojson["properties"]["failed_stage"] == "inspect"
    with Image.open(paths["png"]) as image:
        assert image.format == "PNG"
    with h5py.File(paths["coords"], "r") as handle:
        assert handle["coords"].shape == (0, 2)
        assert handle["tissue_fraction"].shape == (0,)
        assert handle.attrs["status"] == "failed"
    with h5py.File(paths["features"], "r") as handle:
        assert handle["features"].shape == (0, 1280)
        assert handle["coords"].shape == (0, 2)
        attrs = dict(handle.attrs)
    assert attrs["status"] == "failed"
    assert attrs["failed_stage"] == "inspect"
    assert attrs["error"] == info["error"]
    assert attrs["encoder"] == "efficientnet_lite0"
    assert attrs["backend"] == "none"

    first_warning = next(record for record in caplog.records if record.levelno == logging.WARNING)
    assert "truncated-slide" in first_warning.getMessage()
    assert str(truncated) in first_warning.getMessage()
    assert OPENSLIDE_OPEN_REASON in first_warning.getMessage()
    passed_on = [record.getMessage() for record in caplog.records[1:]]
    assert len(passed_on) == 3
    assert all("failed at the inspect stage" in message for message in passed_on)


def test_truncated_slide_raises_under_error(truncated, tmp_path):
    info_path = tmp_path / "info.json"
    with pytest.raises(SlideReadError) as error:
        run_inspect(truncated, info_path, slide_id="truncated-slide", on_failure="error")
    assert str(truncated) in str(error.value)
    assert OPENSLIDE_OPEN_REASON in str(error.value)
    assert not info_path.exists()


def test_corrupt_tiles_fail_the_tissue_stage(corrupt, tmp_path):
    paths = run_stages(corrupt, tmp_path, slide_id="corrupt-slide", on_failure="skip")

    assert json.loads(paths["info"].read_text())["status"] == "ok"
    properties = json.loads(paths["geojson"].read_text())["properties"]
    assert properties["failed_stage"] == "tissue"
    assert OPENSLIDE_TILE_REASON in properties["error"]
    attrs = h5_attrs(paths["features"])
    assert attrs["status"] == "failed"
    assert attrs["failed_stage"] == "tissue"
    with h5py.File(paths["features"], "r") as handle:
        assert handle["features"].shape == (0, 1280)


def test_corrupt_tiles_raise_under_error(corrupt, tmp_path):
    paths = stage_paths(tmp_path)
    run_inspect(corrupt, paths["info"], slide_id="corrupt-slide", on_failure="error")
    with pytest.raises(SlideReadError) as error:
        run_tissue(corrupt, info_path=paths["info"], png_path=paths["png"],
                   geojson_path=paths["geojson"], on_failure="error")
    assert str(corrupt) in str(error.value)
    assert OPENSLIDE_TILE_REASON in str(error.value)
    assert not paths["geojson"].exists()


def test_feature_stage_read_failure(wsi, corrupt, tmp_path):
    """Patches tiled on the intact slide, then read from the corrupt copy."""
    intact = run_stages(wsi / CMU, tmp_path / "intact", slide_id="CMU", on_failure="skip")
    assert json.loads(intact["info"].read_text())["status"] == "ok"
    assert json.loads(intact["geojson"].read_text())["properties"]["status"] == "ok"
    assert h5_attrs(intact["coords"])["status"] == "ok"
    assert h5_attrs(intact["features"])["status"] == "ok"
    coords = intact["coords"]

    skipped = tmp_path / "skipped.h5"
    record = run_features(corrupt, coords_path=coords, output_path=skipped, slide_id="corrupt-slide",
                          settings=EAGER, on_failure="skip")
    assert record["failed_stage"] == "features"
    attrs = h5_attrs(skipped)
    assert attrs["status"] == "failed"
    assert attrs["failed_stage"] == "features"
    assert OPENSLIDE_TILE_REASON in attrs["error"]
    with h5py.File(skipped, "r") as handle:
        assert handle["features"].shape == (0, 1280)

    failed = tmp_path / "failed.h5"
    with pytest.raises(SlideReadError) as error:
        run_features(corrupt, coords_path=coords, output_path=failed, slide_id="corrupt-slide",
                     settings=EAGER, on_failure="error")
    assert str(corrupt) in str(error.value)
    assert not failed.exists()


def test_setting_error_not_skipped(wsi, tmp_path):
    """An invalid setting would fail every slide, so skip does not turn it into a record."""
    paths = stage_paths(tmp_path)
    run_inspect(wsi / CMU, paths["info"], slide_id="CMU", on_failure="skip")
    run_tissue(wsi / CMU, info_path=paths["info"], png_path=paths["png"], geojson_path=paths["geojson"],
               on_failure="skip")
    run_tiling(wsi / CMU, info_path=paths["info"], geojson_path=paths["geojson"],
               coords_path=paths["coords"], on_failure="skip")
    settings = FeatureSettings(encoder="no_such_encoder", backend="eager", device="cpu")
    with pytest.raises(ValueError, match="Unknown patch encoder"):
        run_features(wsi / CMU, coords_path=paths["coords"], output_path=paths["features"],
                     slide_id="CMU", settings=settings, on_failure="skip")
    assert not paths["features"].exists()


def test_missing_mpp_skipped(wsi, tmp_path):
    info_path = tmp_path / "info.json"
    run_inspect(wsi / TCGA, info_path, slide_id="TCGA", on_failure="skip")
    info = json.loads(info_path.read_text())
    assert info["status"] == "failed"
    assert info["error_type"] == MissingResolutionError.__name__
    assert "`mpp` column" in info["error"]


def test_failure_record_raises_under_error(truncated, tmp_path):
    paths = stage_paths(tmp_path)
    run_inspect(truncated, paths["info"], slide_id="truncated-slide", on_failure="skip")
    with pytest.raises(SlideFailedError) as error:
        run_tissue(truncated, info_path=paths["info"], png_path=paths["png"],
                   geojson_path=paths["geojson"], on_failure="error")
    assert "truncated-slide" in str(error.value)
    assert "inspect stage" in str(error.value)
    assert OPENSLIDE_OPEN_REASON in str(error.value)
    assert not paths["geojson"].exists()


def test_invalid_policy_rejected(truncated, tmp_path):
    with pytest.raises(ValueError, match="slides.on_failure"):
        run_inspect(truncated, tmp_path / "info.json", slide_id="truncated-slide", on_failure="ignore")


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("efficientnet_lite0")


def write_bag_inputs(folder, encoder):
    """Features of three slides (A1 good, A2 and B1 failed) and a cohort of patients A, B and C."""
    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, encoder.feature_dim)).astype(np.float32)
    write_features(folder / "A1.h5", good, np.zeros((3, 2), np.int64),
                   {"slide_id": "A1", "level": 0, "read_size_level": 256, "level_downsample": 1.0,
                    "level_dimensions": [1024, 1024]})
    for slide_id in ("A2", "B1"):
        record = {"slide_id": slide_id, "slide_path": f"/slides/{slide_id}.svs", "status": "failed",
                  "failed_stage": "inspect", "error_type": "SlideReadError",
                  "error": f"OpenSlide cannot read /slides/{slide_id}.svs"}
        write_failed_features(folder / f"{slide_id}.h5", record, encoder)
    pd.DataFrame({"case_id": ["A", "B", "C"], "survival_months": [10.0, 20.0, 30.0],
                  "censorship": [0, 0, 1]}).to_csv(folder / "cohort.tsv", sep="\t", index=False)
    fold = {"train": ["A", "B"], "validation": [], "test": ["C"]}
    (folder / "fold_0.json").write_text(json.dumps(fold))
    paths = {slide_id: folder / f"{slide_id}.h5" for slide_id in ("A1", "A2", "B1")}
    return paths, {"A1": "A", "A2": "A", "B1": "B"}, good


def test_failed_slide_leaves_other_slides_in_bag(tmp_path, encoder, caplog):
    paths, slide_cases, good = write_bag_inputs(tmp_path, encoder)
    with caplog.at_level(logging.WARNING, logger="mmlego.stages.inputs"):
        data = load_slide_modality(name="slides", cohort_tsv=tmp_path / "cohort.tsv",
                                   fold_json=tmp_path / "fold_0.json", slide_cases=slide_cases,
                                   feature_paths=paths, n_bins=1, on_failure="skip")
    assert list(data.case_ids) == ["A", "B", "C"]
    assert data.present.tolist() == [True, False, False]
    torch.testing.assert_close(data.features[0], torch.from_numpy(good))
    assert data.features[1].shape == (0, 1280)
    assert "slide B1 of patient B failed at the inspect stage" in caplog.text
    assert "slide A2 of patient A failed" in caplog.text


def test_failed_slide_raises_when_policy_is_error(tmp_path, encoder):
    paths, slide_cases, _ = write_bag_inputs(tmp_path, encoder)
    with pytest.raises(SlideFailedError) as error:
        load_slide_modality(name="slides", cohort_tsv=tmp_path / "cohort.tsv",
                            fold_json=tmp_path / "fold_0.json", slide_cases=slide_cases,
                            feature_paths=paths, n_bins=1, on_failure="error")
    assert "A2" in str(error.value)
    assert "B1" in str(error.value)
    assert "slides.on_failure: skip" in str(error.value)


def test_provenance_lists_failed_slides(tmp_path, encoder):
    paths, slide_cases, _ = write_bag_inputs(tmp_path, encoder)
    records = failed_slides(paths, slide_cases, case_ids=["B", "C"])
    assert [record["slide_id"] for record in records] == ["B1"]

    write_provenance(tmp_path / "provenance.json", config={}, data_files=[], failed_slides=records)
    written = json.loads((tmp_path / "provenance.json").read_text())["failed_slides"]
    assert written == [{"slide_id": "B1", "case_id": "B", "slide_path": "/slides/B1.svs",
                        "status": "failed", "failed_stage": "inspect", "error_type": "SlideReadError",
                        "error": "OpenSlide cannot read /slides/B1.svs"}]
