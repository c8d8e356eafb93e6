"""Slide inspection on the two real slides, the mpp policy and unreadable files."""

from __future__ import annotations

import json
import logging

import pytest

from mmlego.slides.inspect import (
    MissingResolutionError,
    SlideReadError,
    inspect_slide,
    main,
    resolve_mpp,
)
from mmlego.slides.sheet import read_slide_sheet, slide_rows

from conftest import CMU, TCGA


def test_cmu_metadata_read(wsi):
    info = inspect_slide(wsi / CMU, slide_id="CMU-1-Small-Region")
    assert info["vendor"] == "aperio"
    assert info["level_count"] == 1
    assert info["level_dimensions"] == [[2220, 2967]]
    assert info["level_downsamples"] == [1.0]
    assert info["objective_power"] == 20.0
    assert info["mpp"] == pytest.approx(0.499)
    assert info["mpp_source"] == "openslide"


def test_sheet_mpp_overrides_metadata(wsi):
    info = inspect_slide(wsi / CMU, slide_id="CMU", sheet_mpp=0.25)
    assert info["mpp"] == 0.25
    assert info["mpp_source"] == "sheet"
    assert info["file_metadata_mpp"]["mpp_x"] == pytest.approx(0.499)


def test_tcga_without_mpp_raises(wsi):
    with pytest.raises(MissingResolutionError) as error:
        inspect_slide(wsi / TCGA, slide_id="TCGA-CR-7395-01A-01-TS1")
    message = str(error.value)
    assert "TCGA-CR-7395-01A-01-TS1" in message
    assert "`mpp` column" in message


def test_tcga_sheet_mpp_used(wsi):
    info = inspect_slide(wsi / TCGA, slide_id="TCGA", sheet_mpp=0.5)
    assert info["mpp"] == 0.5
    assert info["mpp_source"] == "sheet"
    assert info["level_count"] == 2
    assert info["objective_power"] is None
    assert info["file_metadata_mpp"] is None


def test_tcga_assumed_mpp_warns(wsi, caplog):
    with caplog.at_level(logging.WARNING):
        info = inspect_slide(wsi / TCGA, slide_id="TCGA", missing_mpp=0.5)
    assert info["mpp_source"] == "assumed"
    assert info["mpp"] == 0.5
    assert "assuming 0.5" in caplog.text


def test_nan_sheet_mpp_falls_back_to_metadata(wsi):
    info = inspect_slide(wsi / CMU, slide_id="CMU", sheet_mpp=float("nan"))
    assert info["mpp_source"] == "openslide"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"aperio.MPP": "0.2520"}, (0.252, 0.252, "vendor:aperio.MPP")),
        (
            {"tiff.XResolution": "20000", "tiff.YResolution": "20000", "tiff.ResolutionUnit": "centimeter"},
            (0.5, 0.5, "tiff"),
        ),
        (
            {"tiff.XResolution": "101600", "tiff.YResolution": "101600", "tiff.ResolutionUnit": "inch"},
            (0.25, 0.25, "tiff"),
        ),
        ({"openslide.mpp-x": "0.3", "openslide.mpp-y": "0.31", "aperio.MPP": "9"}, (0.3, 0.31, "openslide")),
    ],
)
def test_mpp_sources_in_order(properties, expected):
    mpp_x, mpp_y, source = resolve_mpp(properties, slide_id="s")
    assert mpp_x == pytest.approx(expected[0])
    assert mpp_y == pytest.approx(expected[1])
    assert source == expected[2]


def test_placeholder_tiff_resolution_ignored():
    # 72 dpi is a writer's default, 353 µm per pixel: not a scan resolution.
    properties = {"tiff.XResolution": "72", "tiff.YResolution": "72", "tiff.ResolutionUnit": "inch"}
    with pytest.raises(MissingResolutionError):
        resolve_mpp(properties, slide_id="s")


def test_invalid_missing_mpp_rejected():
    with pytest.raises(ValueError, match="missing_mpp"):
        resolve_mpp({}, slide_id="s", missing_mpp="guess")


def test_truncated_slide_error_names_path(wsi, tmp_path):
    truncated = tmp_path / "truncated.svs"
    data = (wsi / CMU).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideReadError) as error:
        inspect_slide(truncated, slide_id="truncated")
    assert str(truncated) in str(error.value)
    assert "truncated" in str(error.value)


def test_missing_file_error_names_path(tmp_path):
    with pytest.raises(SlideReadError, match="not found"):
        inspect_slide(tmp_path / "absent.svs", slide_id="absent")


def test_cli_writes_info_json(wsi, tmp_path):
    output = tmp_path / "info.json"
    main([str(wsi / TCGA), "--slide-id", "TCGA", "--output", str(output), "--mpp", "0.5"])
    info = json.loads(output.read_text())
    assert info["slide_id"] == "TCGA"
    assert info["mpp_source"] == "sheet"


def test_sheet_rows_with_empty_mpp(tmp_path):
    path = tmp_path / "slides.tsv"
    path.write_text("# comment line\nslide_id\tcase_id\tpath\tmpp\nA\tP1\ta.svs\t\nB\tP1\tb.svs\t0.25\n")
    rows = slide_rows(read_slide_sheet(path))
    assert list(rows) == ["A", "B"]
    assert rows["A"]["mpp"] is None
    assert rows["B"]["mpp"] == 0.25
    assert rows["B"]["case_id"] == "P1"


def test_sheet_duplicate_slide_id_rejected(tmp_path):
    path = tmp_path / "slides.tsv"
    path.write_text("slide_id\tcase_id\tpath\nA\tP1\ta.svs\nA\tP2\tb.svs\n")
    with pytest.raises(ValueError, match="must be unique"):
        read_slide_sheet(path)
