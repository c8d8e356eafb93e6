"""Slide inspection: pyramid levels, objective power and level-0 resolution with its source.

Resolution (micrometres per level-0 pixel, "mpp") is taken from the first of:

1. the slide sheet's ``mpp`` column (``source = "sheet"``), which always wins;
2. OpenSlide's standard ``openslide.mpp-x``/``openslide.mpp-y`` (``"openslide"``);
3. vendor keys such as ``aperio.MPP`` (``"vendor:<key>"``);
4. the TIFF resolution tags ``tiff.XResolution``/``tiff.YResolution`` with a
   ``tiff.ResolutionUnit`` of centimeter or inch (``"tiff"``);
5. the ``missing_mpp`` policy: ``"error"`` raises ``MissingResolutionError``, a number is
   used as an assumed value (``"assumed"``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import openslide

from mmlego.atomic import atomic_path

logger = logging.getLogger(__name__)

# Vendor keys holding level-0 µm per pixel, for files whose vendor OpenSlide does not map
# to openslide.mpp-x. The value applies to both axes.
VENDOR_MPP_KEYS = ("aperio.MPP",)
# Micrometres per TIFF resolution unit.
TIFF_UNIT_UM = {"centimeter": 1e4, "inch": 25400.0}
# Plausible range for a TIFF resolution tag. Writers often store a placeholder (72 dpi is
# 353 µm per pixel), which must not be mistaken for a scan resolution.
TIFF_MPP_RANGE = (0.05, 50.0)


class SlideReadError(RuntimeError):
    """A slide file is missing, unsupported, truncated or corrupt; the message names the path."""


class MissingResolutionError(ValueError):
    """A slide has no resolution metadata and the sheet gives no ``mpp``."""


def open_slide(path: str | Path) -> openslide.OpenSlide:
    """Open ``path`` with OpenSlide, raising ``SlideReadError`` with the path and OpenSlide's reason."""
    path = Path(path)
    if not path.is_file():
        raise SlideReadError(f"Slide file not found: {path}")
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as error:
        raise SlideReadError(
            f"OpenSlide cannot read {path}: {error}. The file is truncated, corrupt or in a format "
            f"OpenSlide does not support; check it against its source or its sha256."
        ) from error
    except openslide.OpenSlideError as error:
        raise SlideReadError(f"OpenSlide failed to open {path}: {error}") from error


def read_region_checked(slide: openslide.OpenSlide, path, location, level, size):
    """Call ``slide.read_region``, turning OpenSlide errors (truncated tiles) into ``SlideReadError``."""
    try:
        return slide.read_region(location, level, size)
    except openslide.OpenSlideError as error:
        raise SlideReadError(
            f"OpenSlide failed to read {path} at level {level}, level-0 position {location}, "
            f"size {size}: {error}. The file may be truncated or corrupt."
        ) from error


def _as_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _mpp_from_tiff_tags(properties) -> tuple[float, float] | None:
    unit = properties.get("tiff.ResolutionUnit")
    x_res = _as_float(properties.get("tiff.XResolution"))
    y_res = _as_float(properties.get("tiff.YResolution"))
    if unit not in TIFF_UNIT_UM or x_res is None or y_res is None:
        return None
    mpp = (TIFF_UNIT_UM[unit] / x_res, TIFF_UNIT_UM[unit] / y_res)
    low, high = TIFF_MPP_RANGE
    if not all(low <= value <= high for value in mpp):
        logger.info("Ignoring TIFF resolution tags: %.4g × %.4g µm/px is outside %s", *mpp,
                    TIFF_MPP_RANGE)
        return None
    return mpp


def _mpp_from_metadata(properties) -> tuple[float, float, str] | None:
    mpp_x = _as_float(properties.get(openslide.PROPERTY_NAME_MPP_X))
    mpp_y = _as_float(properties.get(openslide.PROPERTY_NAME_MPP_Y))
    if mpp_x is not None and mpp_y is not None:
        return mpp_x, mpp_y, "openslide"
    for key in VENDOR_MPP_KEYS:
        value = _as_float(properties.get(key))
        if value is not None:
            return value, value, f"vendor:{key}"
    tiff_mpp = _mpp_from_tiff_tags(properties)
    if tiff_mpp is not None:
        return *tiff_mpp, "tiff"
    return None


def resolve_mpp(properties, *, slide_id: str, sheet_mpp: float | None = None,
                missing_mpp: str | float = "error") -> tuple[float, float, str]:
    """Return level-0 ``(mpp_x, mpp_y, source)`` in µm per pixel, following the order in the module docstring."""
    if sheet_mpp is not None and not (isinstance(sheet_mpp, float) and math.isnan(sheet_mpp)):
        if _as_float(sheet_mpp) is None:
            raise ValueError(f"Slide {slide_id}: the sheet's mpp must be a positive number, got {sheet_mpp!r}.")
        return float(sheet_mpp), float(sheet_mpp), "sheet"
    found = _mpp_from_metadata(properties)
    if found is not None:
        return found
    if missing_mpp == "error":
        raise MissingResolutionError(
            f"Slide {slide_id} has no resolution metadata (no openslide.mpp-x, vendor MPP or TIFF "
            f"resolution tags). Fill the `mpp` column of the slide sheet with its µm per level-0 "
            f"pixel, or set slides.missing_mpp to an assumed value."
        )
    assumed = _as_float(missing_mpp)
    if assumed is None:
        raise ValueError(f"slides.missing_mpp must be 'error' or a positive number, got {missing_mpp!r}.")
    logger.warning("Slide %s has no resolution metadata; assuming %g µm/px (slides.missing_mpp)",
                   slide_id, assumed)
    return assumed, assumed, "assumed"


def inspect_slide(path: str | Path, *, slide_id: str, sheet_mpp: float | None = None,
                  missing_mpp: str | float = "error") -> dict:
    """Describe a slide: vendor, levels, objective power and level-0 mpp with its source.

    Returns a JSON-ready dict; ``level_dimensions`` are (width, height) pixels per level and
    ``mpp`` is the mean of ``mpp_x`` and ``mpp_y`` in µm per level-0 pixel. ``status`` is
    "ok", as opposed to the failure record of ``mmlego.slides.failures``.
    Raises ``SlideReadError`` for an unreadable file and ``MissingResolutionError`` as above.
    """
    with open_slide(path) as slide:
        properties = dict(slide.properties)
        mpp_x, mpp_y, source = resolve_mpp(properties, slide_id=slide_id, sheet_mpp=sheet_mpp,
                                           missing_mpp=missing_mpp)
        return {
            "slide_id": slide_id,
            "path": str(path),
            "vendor": properties.get(openslide.PROPERTY_NAME_VENDOR),
            "level_count": slide.level_count,
            "level_dimensions": [list(size) for size in slide.level_dimensions],
            "level_downsamples": list(slide.level_downsamples),
            "objective_power": _as_float(properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
            "mpp_x": mpp_x,
            "mpp_y": mpp_y,
            "mpp": (mpp_x + mpp_y) / 2,
            "mpp_source": source,
            "file_metadata_mpp": _metadata_mpp_or_none(properties),
            "status": "ok",
        }


def _metadata_mpp_or_none(properties) -> dict | None:
    found = _mpp_from_metadata(properties)
    if found is None:
        return None
    return dict(zip(("mpp_x", "mpp_y", "source"), found))


def read_info(path: str | Path) -> dict:
    """Load an ``info.json`` written by ``write_info``."""
    return json.loads(Path(path).read_text())


def write_info(info: dict, path: str | Path) -> None:
    """Write ``info`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


def parse_missing_mpp(value: str) -> str | float:
    """Parse the ``missing_mpp`` policy: ``"error"`` or a positive number of µm per pixel."""
    if value == "error":
        return value
    number = _as_float(value)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected 'error' or a positive number, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-inspect SLIDE --slide-id ID --output info.json``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-inspect", description=main.__doc__)
    parser.add_argument("slide", help="slide file readable by OpenSlide")
    parser.add_argument("--slide-id", required=True, help="slide name recorded in the output")
    parser.add_argument("--output", required=True, help="info.json to write")
    parser.add_argument("--mpp", type=float, default=None,
                        help="µm per level-0 pixel; overrides the file's metadata")
    parser.add_argument("--missing-mpp", type=parse_missing_mpp, default="error",
                        help="'error' (default) or an assumed µm per pixel for files without metadata")
    args = parser.parse_args(argv)
    info = inspect_slide(args.slide, slide_id=args.slide_id, sheet_mpp=args.mpp,
                         missing_mpp=args.missing_mpp)
    write_info(info, args.output)
    logger.info("Slide %s: %d levels, %.4g µm/px (%s)", args.slide_id, info["level_count"],
                info["mpp"], info["mpp_source"])
