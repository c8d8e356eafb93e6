"""Tiling: patch counts on real slides, pyramid level choice, attributes and empty slides."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from mmlego.slides.inspect import inspect_slide
from mmlego.slides.tiling import TilingSettings, main, read_coords, tile_slide, write_coords
from mmlego.slides.tissue import detect_slide_tissue

from conftest import CMU, TCGA, write_blank_slide
FILE_ATTRS = {"target_mpp", "level0_mpp", "mpp_source", "patch_size", "patch_size_level0", "level",
              "level_downsample", "read_size_level", "slide_id", "min_tissue_fraction"}


def tissue_for(slide_path, tmp_path, *, slide_id, sheet_mpp=None):
    info = inspect_slide(slide_path, slide_id=slide_id, sheet_mpp=sheet_mpp)
    geojson_path = tmp_path / f"{slide_id}.geojson"
    detect_slide_tissue(slide_path, info=info, png_path=tmp_path / f"{slide_id}.png",
                        geojson_path=geojson_path)
    return info, json.loads(geojson_path.read_text())


def test_cmu_patch_count_in_derived_range(wsi, tmp_path):
    info, geojson = tissue_for(wsi / CMU, tmp_path, slide_id="CMU")
    coords, fraction, attrs = tile_slide(wsi / CMU, info=info, geojson=geojson)
    # A 256 px patch at 0.5 µm/px is round(256 · 0.5 / 0.499) = 257 level-0 px, i.e.
    # A = (257 · 0.499 µm)² = 0.01645 mm². Whole patches fit 2220 // 257 = 8 times across
    # and 2967 // 257 = 11 times down, so N ≤ 88. Each kept patch contains at least 0.25 A of
    # tissue, so N ≤ T / (0.25 A). Dropped patches contain under 0.25 A each and the 8 × 11
    # grid contains all tissue but the strips past its edge, so with the detected tissue area T,
    # N ≥ (T - 0.25 A · 88) / (0.75 A) less those strips; 0.5 · T / A bounds it safely.
    area_mm2 = geojson["properties"]["tissue_area_mm2"]
    patch_area_mm2 = (257 * 0.499 / 1000) ** 2
    assert 0.3 <= area_mm2 <= 1.6
    lower = 0.5 * area_mm2 / patch_area_mm2
    upper = min(88, area_mm2 / (0.25 * patch_area_mm2))
    assert lower <= len(coords) <= upper
    assert attrs["patch_size_level0"] == 257
    assert attrs["level"] == 0
    assert (fraction >= 0.25).all()


def test_coords_file_attributes_complete(wsi, tmp_path):
    info, geojson = tissue_for(wsi / CMU, tmp_path, slide_id="CMU")
    coords, fraction, attrs = tile_slide(wsi / CMU, info=info, geojson=geojson)
    path = tmp_path / "coords.h5"
    write_coords(path, coords, fraction, attrs)
    with h5py.File(path, "r") as handle:
        assert FILE_ATTRS <= set(handle.attrs)
        dataset = handle["coords"]
        assert dataset.dtype == np.int64
        assert dataset.shape == (len(coords), 2)
        assert dataset.attrs["patch_level"] == 0
        assert dataset.attrs["patch_size"] == 257
        assert handle.attrs["patch_size"] == 256
        assert handle.attrs["mpp_source"] == "openslide"
    read_back, read_attrs = read_coords(path)
    assert np.array_equal(read_back, coords)
    assert read_attrs["slide_id"] == "CMU"


def test_coords_on_grid_inside_slide(wsi, tmp_path):
    info, geojson = tissue_for(wsi / CMU, tmp_path, slide_id="CMU")
    coords, _, attrs = tile_slide(wsi / CMU, info=info, geojson=geojson)
    size = attrs["patch_size_level0"]
    assert len(np.unique(coords, axis=0)) == len(coords)
    steps = np.diff(np.unique(coords[:, 0]))
    assert (steps % size == 0).all()
    assert (coords >= 0).all()
    assert (coords[:, 0] + size <= 2220).all()
    assert (coords[:, 1] + size <= 2967).all()


def test_tcga_coarser_target_reads_level_one(wsi, tmp_path):
    # Sheet mpp 0.25 and target 1.0: downsample 4; level 1's real downsample is 2.0005,
    # the best level below 4, so patches of round(256 · 4) = 1024 level-0 px are read as
    # round(1024 / 2.0005) = 512 px at level 1.
    info, geojson = tissue_for(wsi / TCGA, tmp_path, slide_id="TCGA", sheet_mpp=0.25)
    settings = TilingSettings(target_mpp=1.0, patch_size=256)
    coords, _, attrs = tile_slide(wsi / TCGA, info=info, geojson=geojson, settings=settings)
    assert attrs["level"] == 1
    assert attrs["level_downsample"] == pytest.approx(2.0005, abs=1e-4)
    assert attrs["patch_size_level0"] == 1024
    assert attrs["read_size_level"] == 512
    assert attrs["mpp_source"] == "sheet"
    assert len(coords) >= 1


def test_tcga_default_target_stays_level_zero(wsi, tmp_path):
    info, geojson = tissue_for(wsi / TCGA, tmp_path, slide_id="TCGA", sheet_mpp=0.5)
    coords, _, attrs = tile_slide(wsi / TCGA, info=info, geojson=geojson)
    assert attrs["level"] == 0
    assert attrs["patch_size_level0"] == 256
    assert len(coords) > 0


def test_square_polygon_hand_count(wsi, tmp_path):
    # Tissue [0, 1024) × [0, 512) with 257 px patches: 4 columns (the last 253/257 inside)
    # by 2 rows (the second 255/257 inside) = 8 patches.
    info = inspect_slide(wsi / CMU, slide_id="CMU")
    square = [[0, 0], [1024, 0], [1024, 512], [0, 512], [0, 0]]
    geojson = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]}, "properties": {}}]}
    coords, fraction, _ = tile_slide(wsi / CMU, info=info, geojson=geojson)
    assert len(coords) == 8
    assert fraction.min() > 0.9
    assert coords.tolist()[:4] == [[0, 0], [257, 0], [514, 0], [771, 0]]


def test_higher_tissue_fraction_keeps_fewer(wsi, tmp_path):
    info, geojson = tissue_for(wsi / CMU, tmp_path, slide_id="CMU")
    counts = [len(tile_slide(wsi / CMU, info=info, geojson=geojson,
                             settings=TilingSettings(min_tissue_fraction=value))[0])
              for value in (0.0, 0.25, 0.9)]
    assert counts[0] >= counts[1] >= counts[2]
    assert counts[0] > counts[2]


def test_blank_slide_gives_empty_coords(tmp_path, caplog):
    slide = write_blank_slide(tmp_path / "blank.tiff")
    info, geojson = tissue_for(slide, tmp_path, slide_id="blank")
    assert info["mpp_source"] == "openslide"
    with caplog.at_level(logging.WARNING):
        coords, fraction, attrs = tile_slide(slide, info=info, geojson=geojson)
    assert coords.shape == (0, 2)
    assert fraction.shape == (0,)
    assert "writing empty coords" in caplog.text
    path = tmp_path / "coords.h5"
    write_coords(path, coords, fraction, attrs)
    with h5py.File(path, "r") as handle:
        assert handle["coords"].shape == (0, 2)


def test_invalid_settings_rejected():
    with pytest.raises(ValueError, match="min_tissue_fraction"):
        TilingSettings(min_tissue_fraction=1.5)
    with pytest.raises(ValueError, match="target_mpp"):
        TilingSettings(target_mpp=0)


def test_cli_writes_coords(wsi, tmp_path):
    info, _ = tissue_for(wsi / CMU, tmp_path, slide_id="CMU")
    (tmp_path / "info.json").write_text(json.dumps(info))
    output = tmp_path / "coords.h5"
    main([str(wsi / CMU), "--info", str(tmp_path / "info.json"), "--geojson", str(tmp_path / "CMU.geojson"),
          "--output", str(output), "--patch-size", "128"])
    coords, attrs = read_coords(output)
    assert attrs["patch_size"] == 128
    assert len(coords) > 0
