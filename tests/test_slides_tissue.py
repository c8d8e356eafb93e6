"""Tissue detection: real slides, a blank slide, and the GeoJSON round trip used by tiling."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from mmlego.slides import tissue
from mmlego.slides.inspect import inspect_slide
from mmlego.slides.tissue import (
    TissueSettings,
    detect_slide_tissue,
    mask_to_polygons,
    polygons_to_geojson,
    rasterize_tissue,
)

from conftest import CMU, TCGA, write_blank_slide


def run_detection(slide_path, tmp_path, *, slide_id, sheet_mpp=None):
    info = inspect_slide(slide_path, slide_id=slide_id, sheet_mpp=sheet_mpp)
    png, geojson_path = tmp_path / "tissue.png", tmp_path / "tissue.geojson"
    summary = detect_slide_tissue(slide_path, info=info, png_path=png, geojson_path=geojson_path)
    return info, summary, png, json.loads(geojson_path.read_text())


@pytest.mark.parametrize(("name", "sheet_mpp", "min_mm2", "max_mm2"),
                         [(CMU, None, 0.3, 1.6), (TCGA, 0.5, 1.5, 4.0)])
def test_default_settings_find_tissue(wsi, tmp_path, name, sheet_mpp, min_mm2, max_mm2):
    # Bounds: CMU's level 0 covers 1.11 × 1.48 mm with much glass; TCGA's 2.22 × 1.78 mm
    # at the assumed 0.5 µm/px, mostly tissue.
    _, summary, _, geojson = run_detection(wsi / name, tmp_path, slide_id="s", sheet_mpp=sheet_mpp)
    assert summary["regions"] >= 1
    assert len(geojson["features"]) == summary["regions"]
    assert min_mm2 <= summary["tissue_area_mm2"] <= max_mm2


def test_geojson_in_level0_pixels(wsi, tmp_path):
    info, _, _, geojson = run_detection(wsi / CMU, tmp_path, slide_id="CMU")
    width, height = info["level_dimensions"][0]
    assert geojson["type"] == "FeatureCollection"
    for feature in geojson["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["objectType"] == "annotation"
        for ring in feature["geometry"]["coordinates"]:
            points = np.asarray(ring)
            assert np.array_equal(points[0], points[-1])
            assert len(points) >= 4
            assert points.min() >= 0
            assert points[:, 0].max() <= width
            assert points[:, 1].max() <= height


def test_qc_png_at_thumbnail_resolution(wsi, tmp_path):
    _, _, png, _ = run_detection(wsi / CMU, tmp_path, slide_id="CMU")
    # 2220 × 2967 px at 0.499 µm/px, shown at 8 µm/px: about 139 × 185 px.
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (138, 185)


def test_thumbnail_read_from_coarser_level(wsi, monkeypatch):
    levels = []
    original = tissue.read_region_checked

    def spy(slide, path, location, level, size):
        levels.append(level)
        return original(slide, path, location, level, size)

    monkeypatch.setattr(tissue, "read_region_checked", spy)
    with tissue.open_slide(wsi / TCGA) as slide:
        rgb, downsample = tissue.read_thumbnail(slide, wsi / TCGA, level0_mpp=0.5, thumbnail_mpp=8.0)
    assert set(levels) == {1}
    assert downsample == 16.0
    assert rgb.shape == (223, 278, 3)


def test_blank_slide_has_no_tissue(tmp_path, caplog):
    slide = write_blank_slide(tmp_path / "blank.tiff")
    with caplog.at_level(logging.WARNING):
        _, summary, png, geojson = run_detection(slide, tmp_path, slide_id="blank")
    assert summary["regions"] == 0
    assert geojson["features"] == []
    assert png.is_file()
    assert "no tissue found" in caplog.text


def test_polygons_rasterize_back_to_mask():
    mask = np.zeros((60, 80), dtype=bool)
    mask[10:50, 10:70] = True
    mask[20:30, 30:45] = False  # a hole
    mask[52:58, 2:8] = True  # a second region
    geojson = polygons_to_geojson(mask_to_polygons(mask), downsample=4.0, slide_id="s")
    assert len(geojson["features"]) == 2
    rings = [len(feature["geometry"]["coordinates"]) for feature in geojson["features"]]
    assert sorted(rings) == [1, 2]
    restored = rasterize_tissue(geojson, origin=(0.0, 0.0), pixel_size=4.0, shape=mask.shape)
    intersection = (restored & mask).sum()
    union = (restored | mask).sum()
    assert intersection / union > 0.9
    assert not restored[25, 37]


def test_settings_are_physical(wsi, tmp_path):
    strict = TissueSettings(min_region_area_mm2=100.0)
    info = inspect_slide(wsi / CMU, slide_id="CMU")
    summary = detect_slide_tissue(wsi / CMU, info=info, settings=strict,
                                  png_path=tmp_path / "t.png", geojson_path=tmp_path / "t.geojson")
    assert summary["regions"] == 0
