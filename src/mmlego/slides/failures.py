"""The slide failure policy (``slides.on_failure``) and what a stage writes for a failed slide.

Under ``error`` (the default) a stage that cannot process its slide raises, so its job
fails with the slide's path and OpenSlide's reason. Under ``skip`` the stage logs a
warning and writes its usual outputs, empty and marked with a failure record:
``status = "failed"``, ``failed_stage``, ``error_type`` and ``error``. Each later stage
finds the record in its input and passes it on, so the features file of a failed slide
has no patches. Its patient's bag then gets nothing from it, as from a slide without
tissue. Outputs of a slide processed without error have ``status = "ok"``.

Only errors that belong to one slide are skipped: an unreadable file (``SlideReadError``)
and a missing resolution (``MissingResolutionError``). Any other error, such as an invalid
setting or an encoder that cannot be loaded, would fail every slide and still fails the job.

The stage runners below are what the workflow's slide jobs call. Submodules that load
torch or scikit-image are imported inside the functions that need them, so the model
stages can read failure records cheaply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image, ImageDraw

from mmlego.atomic import atomic_path
from mmlego.slides.inspect import (MissingResolutionError, SlideReadError, inspect_slide, read_info,
                                   write_info)

logger = logging.getLogger(__name__)

ON_FAILURE_CHOICES = ("error", "skip")
# Errors that concern one slide only. The policy applies to these and to no other error.
SLIDE_ERRORS = (SlideReadError, MissingResolutionError)
RECORD_KEYS = ("slide_id", "slide_path", "status", "failed_stage", "error_type", "error")


class SlideFailedError(RuntimeError):
    """Error for an input that records an earlier stage's failure while the policy is ``error``."""


def check_on_failure(on_failure: str) -> None:
    """Raise ``ValueError`` unless ``on_failure`` is one of ``ON_FAILURE_CHOICES``."""
    if on_failure not in ON_FAILURE_CHOICES:
        raise ValueError(
            f"slides.on_failure must be one of {list(ON_FAILURE_CHOICES)}, got {on_failure!r}."
        )


def failure_record(error: BaseException, *, slide_id: str, slide_path: str | Path, stage: str) -> dict:
    """Build the failure record of a slide whose ``stage`` raised ``error``."""
    return {
        "slide_id": slide_id,
        "slide_path": str(slide_path),
        "status": "failed",
        "failed_stage": stage,
        "error_type": type(error).__name__,
        "error": str(error),
    }


def is_failed(record: Mapping[str, Any]) -> bool:
    """Return whether a stage output's fields or attributes are a failure record."""
    return record.get("status") == "failed"


def _skip_or_raise(error: Exception, *, slide_id: str, slide_path: str | Path, stage: str,
                   on_failure: str) -> dict:
    """Re-raise ``error`` under the ``error`` policy, or log it and return its failure record under ``skip``."""
    if on_failure == "error":
        raise error
    record = failure_record(error, slide_id=slide_id, slide_path=slide_path, stage=stage)
    logger.warning("Slide %s (%s): the %s stage failed and the slide is skipped "
                   "(slides.on_failure: skip): %s: %s", slide_id, slide_path, stage,
                   record["error_type"], record["error"])
    return record


def _pass_on(record: Mapping[str, Any], *, stage: str, on_failure: str) -> dict:
    """Return an input's failure record for ``stage`` to write, or raise ``SlideFailedError`` under ``error``."""
    record = {key: record.get(key, "") for key in RECORD_KEYS}
    slide = f"Slide {record['slide_id']} ({record['slide_path']})"
    reason = f"{record['error_type']}: {record['error']}"
    if on_failure == "error":
        raise SlideFailedError(
            f"{slide} failed at the {record['failed_stage']} stage under slides.on_failure: skip, "
            f"and the policy is now error. Fix or replace the slide file so its stages run again, "
            f"or set slides.on_failure: skip. Recorded error: {reason}")
    logger.warning("%s failed at the %s stage, so the %s stage writes empty outputs for it. %s",
                   slide, record["failed_stage"], stage, reason)
    return record


# -- writers of a failed slide's outputs ---------------------------------------------------


def write_failed_info(path: str | Path, record: Mapping[str, Any]) -> None:
    """Write info.json as the failure record alone."""
    write_info(dict(record), path)


def write_failed_tissue(record: Mapping[str, Any], *, png_path: str | Path, geojson_path: str | Path) -> None:
    """Write an empty tissue FeatureCollection with the record as its properties, and a PNG that names the failure."""
    geojson = {"type": "FeatureCollection", "features": [], "properties": dict(record)}
    with atomic_path(geojson_path) as tmp:
        tmp.write_text(json.dumps(geojson) + "\n")
    image = Image.new("RGB", (640, 48), "white")
    canvas = ImageDraw.Draw(image)
    canvas.text((8, 8), f"Slide {record['slide_id']}: the {record['failed_stage']} stage failed",
                fill=(170, 0, 0))
    canvas.text((8, 26), "tissue.geojson has no polygons and records the error.", fill=(0, 0, 0))
    with atomic_path(png_path) as tmp:
        image.save(tmp, format="PNG")


def write_failed_coords(path: str | Path, record: Mapping[str, Any]) -> None:
    """Write coords.h5 with (0, 2) ``coords``, (0,) ``tissue_fraction`` and the record as attributes."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs.update(dict(record))
        handle.create_dataset("coords", data=np.zeros((0, 2), dtype=np.int64))
        handle.create_dataset("tissue_fraction", data=np.zeros((0,), dtype=np.float32))


def write_failed_features(path: str | Path, record: Mapping[str, Any], encoder) -> None:
    """Write a features file with (0, D) ``features`` and (0, 2) ``coords`` for a failed slide.

    The attributes are the record plus the encoder's name, weights sha256 and feature
    width, with ``backend`` and ``device`` "none", as for a slide without patches.
    """
    attrs = {**record, "encoder": encoder.name, "encoder_weights_sha256": encoder.weights_sha256,
             "feature_dim": int(encoder.feature_dim), "backend": "none", "device": "none"}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs.update(attrs)
        handle.create_dataset("coords", data=np.zeros((0, 2), dtype=np.int64))
        handle.create_dataset("features", data=np.zeros((0, encoder.feature_dim), dtype=np.float32))


# -- readers --------------------------------------------------------------------------------


def read_h5_failure(path: str | Path) -> dict | None:
    """Return the failure record in the attributes of a coords or features file, or None."""
    with h5py.File(path, "r") as handle:
        attrs = dict(handle.attrs)
    if attrs.get("status") != "failed":
        return None
    return {key: str(attrs.get(key, "")) for key in RECORD_KEYS}


def failed_slides(feature_paths: Mapping[str, str | Path], slide_cases: Mapping[str, str],
                  case_ids: Iterable[str] | None = None) -> list[dict]:
    """List the failure records of the features files, each with the slide's ``case_id``.

    ``feature_paths`` maps slide_id to its features file and ``slide_cases`` maps slide_id
    to case_id (the slide sheet). With ``case_ids``, slides of other patients are left out.
    """
    patients = None if case_ids is None else set(case_ids)
    records = []
    for slide_id, path in feature_paths.items():
        case_id = slide_cases.get(slide_id)
        if patients is not None and case_id not in patients:
            continue
        record = read_h5_failure(path)
        if record is not None:
            records.append({"slide_id": slide_id, "case_id": case_id,
                            **{key: record[key] for key in RECORD_KEYS if key != "slide_id"}})
    return records


# -- stage runners --------------------------------------------------------------------------


def run_inspect(slide_path: str | Path, info_path: str | Path, *, slide_id: str,
                sheet_mpp: float | None = None, missing_mpp: str | float = "error",
                on_failure: str = "error") -> dict:
    """Inspect a slide, write info.json under the ``on_failure`` policy and return what was written."""
    check_on_failure(on_failure)
    try:
        info = inspect_slide(slide_path, slide_id=slide_id, sheet_mpp=sheet_mpp,
                             missing_mpp=missing_mpp)
    except SLIDE_ERRORS as error:
        record = _skip_or_raise(error, slide_id=slide_id, slide_path=slide_path, stage="inspect",
                                on_failure=on_failure)
        write_failed_info(info_path, record)
        return record
    write_info(info, info_path)
    return info


def run_tissue(slide_path: str | Path, *, info_path: str | Path, png_path: str | Path,
               geojson_path: str | Path, settings=None, on_failure: str = "error") -> dict:
    """Detect tissue and write tissue.png and tissue.geojson under the ``on_failure`` policy.

    Returns the detector's summary, or the failure record that was written.
    """
    from mmlego.slides.tissue import TissueSettings, detect_slide_tissue

    check_on_failure(on_failure)
    info = read_info(info_path)
    if is_failed(info):
        record = _pass_on(info, stage="tissue", on_failure=on_failure)
        write_failed_tissue(record, png_path=png_path, geojson_path=geojson_path)
        return record
    try:
        return detect_slide_tissue(slide_path, info=info, settings=settings or TissueSettings(),
                                   png_path=png_path, geojson_path=geojson_path)
    except SLIDE_ERRORS as error:
        record = _skip_or_raise(error, slide_id=info["slide_id"], slide_path=slide_path,
                                stage="tissue", on_failure=on_failure)
        write_failed_tissue(record, png_path=png_path, geojson_path=geojson_path)
        return record


def run_tiling(slide_path: str | Path, *, info_path: str | Path, geojson_path: str | Path,
               coords_path: str | Path, settings=None, on_failure: str = "error") -> dict:
    """Tile a slide and write coords.h5 under the ``on_failure`` policy.

    Returns the coords file's attributes, or the failure record that was written.
    """
    from mmlego.slides.tiling import TilingSettings, tile_slide, write_coords

    check_on_failure(on_failure)
    info = read_info(info_path)
    geojson = json.loads(Path(geojson_path).read_text())
    for found in (info, geojson.get("properties") or {}):
        if is_failed(found):
            record = _pass_on(found, stage="tiling", on_failure=on_failure)
            write_failed_coords(coords_path, record)
            return record
    try:
        coords, fraction, attrs = tile_slide(slide_path, info=info, geojson=geojson,
                                             settings=settings or TilingSettings())
    except SLIDE_ERRORS as error:
        record = _skip_or_raise(error, slide_id=info["slide_id"], slide_path=slide_path,
                                stage="tiling", on_failure=on_failure)
        write_failed_coords(coords_path, record)
        return record
    write_coords(coords_path, coords, fraction, attrs)
    return attrs


def run_features(slide_path: str | Path, *, coords_path: str | Path, output_path: str | Path,
                 slide_id: str, settings=None, on_failure: str = "error") -> dict:
    """Encode a slide's patches and write its features file under the ``on_failure`` policy.

    Returns the summary of ``extract_slide_features``, or the failure record that was written.
    """
    from mmlego.slides.encoders import build_encoder
    from mmlego.slides.features import FeatureSettings, extract_slide_features

    check_on_failure(on_failure)
    settings = settings or FeatureSettings()
    upstream = read_h5_failure(coords_path)
    if upstream is not None:
        record = _pass_on(upstream, stage="features", on_failure=on_failure)
    else:
        try:
            return extract_slide_features(slide_path, coords_path, output_path, slide_id=slide_id,
                                          settings=settings)
        except SLIDE_ERRORS as error:
            record = _skip_or_raise(error, slide_id=slide_id, slide_path=slide_path,
                                    stage="features", on_failure=on_failure)
    write_failed_features(output_path, record, build_encoder(settings.encoder, settings.checkpoint))
    return record
