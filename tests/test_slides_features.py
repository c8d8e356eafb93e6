"""Patch features: EfficientNet-Lite0 weights, backends, determinism, empty slides, precomputed files."""

from __future__ import annotations

import importlib.util
import json
import logging

import h5py
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from mmlego.slides.efficientnet_lite import EfficientNetLite0, shipped_weights_path
from mmlego.slides.encoders import build_encoder, encoder_dirname
from mmlego.slides.features import (FeatureSettings, _rgba_to_rgb, extract_slide_features, normalise,
                                    write_onnx)
from mmlego.slides.inspect import inspect_slide
from mmlego.slides.precomputed import (
    PrecomputedFeaturesError,
    find_precomputed,
    import_precomputed,
    read_features,
)
from mmlego.slides.tiling import TilingSettings, tile_slide, write_coords
from mmlego.slides.tissue import detect_slide_tissue

CMU = "CMU-1-Small-Region.svs"
# ONNX Runtime fuses batch norm into the convolutions, which changes float32 rounding:
# features differ from eager torch by about 1e-5 on values of order 1.
BACKEND_ATOL = 1e-4


@pytest.fixture
def cmu(shared_data):
    path = shared_data / "wsi" / CMU
    if not path.is_file():
        pytest.skip(f"real slide not found: {path}")
    return path


@pytest.fixture(scope="module")
def cmu_coords(shared_data, tmp_path_factory):
    """coords.h5 of CMU-1-Small-Region (40 patches with the default settings)."""
    cmu = shared_data / "wsi" / CMU
    if not cmu.is_file():
        pytest.skip(f"real slide not found: {cmu}")
    tmp_path = tmp_path_factory.mktemp("cmu")
    info = inspect_slide(cmu, slide_id="CMU")
    detect_slide_tissue(cmu, info=info, png_path=tmp_path / "t.png", geojson_path=tmp_path / "t.geojson")
    geojson = json.loads((tmp_path / "t.geojson").read_text())
    coords, fraction, attrs = tile_slide(cmu, info=info, geojson=geojson)
    path = tmp_path / "coords.h5"
    write_coords(path, coords, fraction, attrs)
    return path


def subset_coords(source, target, count):
    with h5py.File(source, "r") as handle:
        coords = handle["coords"][:count]
        fraction = handle["tissue_fraction"][:count]
        attrs = dict(handle.attrs)
    write_coords(target, coords, fraction, attrs)
    return target


def test_state_dict_loads_strictly():
    state = torch.load(shipped_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    result = model.load_state_dict(state, strict=True)
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].shape == (1000,)


def test_cmu_features_shape_and_attrs(cmu, cmu_coords, tmp_path):
    output = tmp_path / "features.h5"
    summary = extract_slide_features(cmu, cmu_coords, output, slide_id="CMU",
                                     settings=FeatureSettings(threads=2))
    with h5py.File(output, "r") as handle:
        features = handle["features"][:]
        assert handle["coords"].shape == (summary["patches"], 2)
        assert handle.attrs["encoder"] == "efficientnet_lite0"
        assert len(handle.attrs["encoder_weights_sha256"]) == 64
        assert handle.attrs["input_size"] == 256
        assert handle.attrs["patch_size_level0"] == 257
        assert handle.attrs["backend"] == "onnxruntime"
        assert handle["coords"].attrs["patch_level"] == 0
    assert features.shape == (40, 1280)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    # Different patches must give different features.
    assert features.std(axis=0).mean() > 1e-3


def test_two_runs_identical(cmu, cmu_coords, tmp_path):
    coords = subset_coords(cmu_coords, tmp_path / "few.h5", 6)
    runs = []
    for index in range(2):
        output = tmp_path / f"run{index}.h5"
        extract_slide_features(cmu, coords, output, slide_id="CMU", settings=FeatureSettings(batch_size=4))
        with h5py.File(output, "r") as handle:
            runs.append(handle["features"][:])
    assert np.array_equal(runs[0], runs[1])


@pytest.mark.parametrize("backend", ["eager", "torchscript"])
def test_backends_match_onnxruntime(cmu, cmu_coords, tmp_path, backend):
    coords = subset_coords(cmu_coords, tmp_path / "few.h5", 4)
    outputs = {}
    for name in ("onnxruntime", backend):
        output = tmp_path / f"{name}.h5"
        extract_slide_features(cmu, coords, output, slide_id="CMU", settings=FeatureSettings(backend=name))
        with h5py.File(output, "r") as handle:
            outputs[name] = handle["features"][:]
    np.testing.assert_allclose(outputs[backend], outputs["onnxruntime"], atol=BACKEND_ATOL, rtol=0)


def test_normalise_matches_formula():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    direct = (batch.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
              - np.float32(mean).reshape(1, 3, 1, 1)) / np.float32(std).reshape(1, 3, 1, 1)
    images = normalise(batch, mean, std)
    assert images.shape == (3, 3, 8, 8)
    assert images.dtype == np.float32
    assert np.array_equal(images, direct)


def test_transparent_pixels_turn_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque tissue
    rgba[0, 1] = (0, 0, 0, 0)  # unscanned
    rgba[1, :] = (100, 100, 100, 128)  # half transparent
    rgb = _rgba_to_rgb(Image.fromarray(rgba, "RGBA"))
    assert rgb[0, 0].tolist() == [10, 20, 30]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[1, 0].tolist() == [177, 177, 177]  # 100·128/255 + 255·127/255 = 177.2
    opaque = np.full((2, 2, 4), 255, dtype=np.uint8)
    opaque[..., :3] = 7
    assert np.array_equal(_rgba_to_rgb(Image.fromarray(opaque, "RGBA")), opaque[..., :3])


def test_blank_slide_gives_empty_features(tmp_path, caplog):
    slide = tmp_path / "blank.tiff"
    image = np.full((1024, 1024, 3), 255, dtype=np.uint8)
    tifffile.imwrite(slide, image, tile=(256, 256), photometric="rgb",
                     resolution=(20000, 20000), resolutionunit="CENTIMETER")
    info = inspect_slide(slide, slide_id="blank")
    empty = {"type": "FeatureCollection", "features": []}
    coords, fraction, attrs = tile_slide(slide, info=info, geojson=empty, settings=TilingSettings())
    write_coords(tmp_path / "coords.h5", coords, fraction, attrs)
    output = tmp_path / "features.h5"
    with caplog.at_level(logging.WARNING):
        extract_slide_features(slide, tmp_path / "coords.h5", output, slide_id="blank")
    assert "no patches" in caplog.text
    with h5py.File(output, "r") as handle:
        assert handle["features"].shape == (0, 1280)
        assert handle["coords"].shape == (0, 2)
        assert handle.attrs["encoder"] == "efficientnet_lite0"


def test_stale_onnx_export_rejected(cmu, cmu_coords, tmp_path):
    onnx_path = tmp_path / "encoder.onnx"
    write_onnx(build_encoder("efficientnet_lite0"), onnx_path, input_size=128)
    settings = FeatureSettings(onnx_path=str(onnx_path))
    with pytest.raises(ValueError, match="does not match the encoder"):
        extract_slide_features(cmu, cmu_coords, tmp_path / "features.h5", slide_id="CMU", settings=settings)


def test_onnx_file_export_used(cmu, cmu_coords, tmp_path):
    coords = subset_coords(cmu_coords, tmp_path / "few.h5", 4)
    onnx_path = tmp_path / "encoder.onnx"
    write_onnx(build_encoder("efficientnet_lite0"), onnx_path, input_size=256)
    outputs = []
    for path in (str(onnx_path), None):
        output = tmp_path / f"features_{path is None}.h5"
        extract_slide_features(cmu, coords, output, slide_id="CMU", settings=FeatureSettings(onnx_path=path))
        with h5py.File(output, "r") as handle:
            outputs.append(handle["features"][:])
    assert np.array_equal(outputs[0], outputs[1])


def write_clam_h5(path, count=5, dim=1024):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=rng.normal(size=(count, dim)).astype(np.float32))
        coords = handle.create_dataset("coords", data=rng.integers(0, 10000, size=(count, 2)))
        coords.attrs["patch_level"] = 0
        coords.attrs["patch_size"] = 256
    return path


def test_precomputed_clam_file_imported(tmp_path):
    source = write_clam_h5(tmp_path / "S1.h5")
    found = find_precomputed(tmp_path, "S1")
    output = tmp_path / "out" / "S1.h5"
    summary = import_precomputed(found, output, slide_id="S1")
    assert summary == {"patches": 5, "feature_dim": 1024}
    features, coords, attrs = read_features(output)
    original, original_coords, _ = read_features(source)
    assert np.array_equal(features, original)
    assert np.array_equal(coords, original_coords)
    assert attrs["encoder"] == "precomputed"
    assert attrs["slide_id"] == "S1"
    assert len(attrs["source_sha256"]) == 64


def test_precomputed_pt_not_loaded(tmp_path):
    (tmp_path / "S1.pt").write_bytes(b"not a pickle to load")
    with pytest.raises(PrecomputedFeaturesError, match="pickles"):
        find_precomputed(tmp_path, "S1")


def test_precomputed_mismatched_coords_rejected(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=np.zeros((5, 8), np.float32))
        handle.create_dataset("coords", data=np.zeros((4, 2), np.int64))
    with pytest.raises(PrecomputedFeaturesError, match="coords"):
        read_features(path)


def test_unknown_encoder_rejected():
    with pytest.raises(ValueError, match="Unknown patch encoder"):
        build_encoder("resnet_imaginary")


def test_timm_encoder_needs_checkpoint():
    with pytest.raises(ValueError, match="local checkpoint"):
        build_encoder("timm:resnet18")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_missing_package_named(tmp_path):
    checkpoint = tmp_path / "weights.pth"
    torch.save({}, checkpoint)
    with pytest.raises(ImportError, match="timm"):
        build_encoder("timm:resnet18", checkpoint)


def test_encoder_dirname_safe_for_paths():
    assert encoder_dirname("efficientnet_lite0") == "efficientnet_lite0"
    assert encoder_dirname("timm:vit_small_patch16_224") == "timm-vit_small_patch16_224"
