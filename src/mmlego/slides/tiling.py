"""Tiling: a non-overlapping grid of patches at a target resolution, kept where there is tissue.

Frames: a patch is ``patch_size`` pixels at ``target_mpp`` µm per pixel, which is
``patch_size_level0 = round(patch_size · target_mpp / level0_mpp)`` level-0 pixels. It is
read from pyramid level ``level`` (OpenSlide's best level for that downsample) as a
``read_size_level`` square and resized to ``patch_size``. ``coords`` are level-0 (x, y) of
each patch's top-left corner.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mmlego.atomic import atomic_path
from mmlego.slides.inspect import open_slide, read_info
from mmlego.slides.tissue import rasterize_tissue

logger = logging.getLogger(__name__)

MASK_CELLS_PER_PATCH = 16  # tissue-mask resolution: each patch side spans this many mask pixels
COORDS_FRAME = "level-0 pixels, (x, y) of the patch's top-left corner"


@dataclass(frozen=True)
class TilingSettings:
    """Patch grid parameters.

    ``min_tissue_fraction`` is the share of a patch's area inside the tissue polygons
    needed to keep it. 0.25 keeps patches on the tissue edge, where the mask traced at
    about 8 µm/px is least exact, while dropping patches that are mostly glass.
    """

    target_mpp: float = 0.5
    patch_size: int = 256
    min_tissue_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.target_mpp > 0:
            raise ValueError(f"target_mpp must be a positive µm per pixel, got {self.target_mpp!r}.")
        if not (isinstance(self.patch_size, int) and self.patch_size >= 16):
            raise ValueError(f"patch_size must be an integer of at least 16 pixels, got {self.patch_size!r}.")
        if not 0 <= self.min_tissue_fraction <= 1:
            raise ValueError(f"min_tissue_fraction must lie in [0, 1], got {self.min_tissue_fraction!r}.")


def patch_geometry(slide, *, level0_mpp: float, settings: TilingSettings) -> dict:
    """Compute the patch frames for ``slide``: level-0 size, pyramid level read and read size there."""
    downsample = settings.target_mpp / level0_mpp
    patch_size_level0 = round(settings.patch_size * downsample)
    if patch_size_level0 < 1:
        raise ValueError(f"A {settings.patch_size} px patch at {settings.target_mpp} µm/px is under one "
                         f"level-0 pixel at {level0_mpp} µm/px; raise target_mpp or patch_size.")
    level = slide.get_best_level_for_downsample(downsample)
    level_downsample = float(slide.level_downsamples[level])
    return {
        "target_mpp": float(settings.target_mpp),
        "level0_mpp": float(level0_mpp),
        "patch_size": int(settings.patch_size),
        "patch_size_level0": int(patch_size_level0),
        "level": int(level),
        "level_downsample": level_downsample,
        "read_size_level": max(1, round(patch_size_level0 / level_downsample)),
    }


def _tissue_bounds(geojson: dict, width0: int, height0: int) -> tuple[int, int, int, int] | None:
    points = [np.asarray(ring, dtype=float)
              for feature in geojson.get("features", [])
              for ring in _exterior_rings(feature.get("geometry") or {})]
    if not points:
        return None
    stacked = np.concatenate(points)
    left, top = np.floor(stacked.min(axis=0)).astype(int)
    right, bottom = np.ceil(stacked.max(axis=0)).astype(int)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width0), min(bottom, height0)
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _exterior_rings(geometry: dict) -> list:
    if geometry.get("type") == "Polygon":
        return geometry["coordinates"][:1]
    if geometry.get("type") == "MultiPolygon":
        return [polygon[0] for polygon in geometry["coordinates"]]
    return []


def grid_coords(geojson: dict, *, dimensions: tuple[int, int], patch_size_level0: int,
                min_tissue_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Place patches on a grid over the tissue bounding box and keep those with enough tissue.

    Returns ``(coords, tissue_fraction)``: (N, 2) int64 level-0 (x, y) top-left corners in
    row-major order and their (N,) float32 tissue fractions. Patches that would extend
    past the slide's level-0 edge are dropped.
    """
    width0, height0 = dimensions
    bounds = _tissue_bounds(geojson, width0, height0)
    if bounds is None:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0,), dtype=np.float32)
    left, top, right, bottom = bounds
    columns = math.ceil((right - left) / patch_size_level0)
    rows = math.ceil((bottom - top) / patch_size_level0)
    cells = MASK_CELLS_PER_PATCH
    mask = rasterize_tissue(geojson, origin=(left, top), pixel_size=patch_size_level0 / cells,
                            shape=(rows * cells, columns * cells))
    fraction = mask.reshape(rows, cells, columns, cells).mean(axis=(1, 3))  # (rows, columns)
    row_index, column_index = np.nonzero(fraction >= max(min_tissue_fraction, 1e-9))
    xs = left + column_index.astype(np.int64) * patch_size_level0
    ys = top + row_index.astype(np.int64) * patch_size_level0
    inside = (xs + patch_size_level0 <= width0) & (ys + patch_size_level0 <= height0)
    coords = np.stack([xs[inside], ys[inside]], axis=1).astype(np.int64)
    return coords, fraction[row_index, column_index][inside].astype(np.float32)


def tile_slide(path: str | Path, *, info: dict, geojson: dict,
               settings: TilingSettings = TilingSettings()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Tile one slide: return ``(coords, tissue_fraction, attrs)`` for ``write_coords``.

    ``info`` is the slide's info.json content; ``geojson`` its tissue polygons in level-0
    pixels. A slide without tissue gives (0, 2) coords and a logged warning.
    """
    with open_slide(path) as slide:
        geometry = patch_geometry(slide, level0_mpp=info["mpp"], settings=settings)
        dimensions = slide.dimensions
    if geometry["target_mpp"] < geometry["level0_mpp"]:
        logger.warning("Slide %s: target %.3g µm/px is finer than the scan (%.3g µm/px); patches are upsampled",
                       info["slide_id"], geometry["target_mpp"], geometry["level0_mpp"])
    coords, tissue_fraction = grid_coords(
        geojson, dimensions=dimensions, patch_size_level0=geometry["patch_size_level0"],
        min_tissue_fraction=settings.min_tissue_fraction)
    attrs = {"slide_id": info["slide_id"], "status": "ok", "mpp_source": info["mpp_source"], **geometry,
             "min_tissue_fraction": float(settings.min_tissue_fraction),
             "level_dimensions": list(dimensions), "coords_frame": COORDS_FRAME}
    if len(coords) == 0:
        logger.warning("Slide %s: no patch has a tissue fraction of at least %.2f; writing empty coords",
                       info["slide_id"], settings.min_tissue_fraction)
    logger.info("Slide %s: %d patches of %d px at %.3g µm/px (%d level-0 px, read at level %d)",
                info["slide_id"], len(coords), geometry["patch_size"], geometry["target_mpp"],
                geometry["patch_size_level0"], geometry["level"])
    return coords, tissue_fraction, attrs


def write_coords_dataset(group: h5py.Group, coords: np.ndarray, attrs: dict) -> None:
    """Write ``coords`` with the tiling attributes on ``group`` and CLAM's attributes on the dataset.

    CLAM reads a patch as ``read_region(coords, patch_level, (patch_size, patch_size))``, so on
    the dataset ``patch_size`` is the read size at ``patch_level``; the group's ``patch_size``
    is the size at ``target_mpp``.
    """
    for key, value in attrs.items():
        group.attrs[key] = value
    dataset = group.create_dataset("coords", data=np.asarray(coords, dtype=np.int64).reshape(-1, 2))
    dataset.attrs["patch_level"] = attrs["level"]
    dataset.attrs["patch_size"] = attrs["read_size_level"]
    dataset.attrs["downsample"] = [attrs["level_downsample"]] * 2
    dataset.attrs["level_dim"] = attrs["level_dimensions"]
    dataset.attrs["name"] = attrs["slide_id"]


def write_coords(path: str | Path, coords: np.ndarray, tissue_fraction: np.ndarray, attrs: dict) -> None:
    """Write coords.h5 atomically: ``coords`` (N, 2) int64 and ``tissue_fraction`` (N,) float32."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            write_coords_dataset(handle, coords, attrs)
            handle.create_dataset("tissue_fraction", data=np.asarray(tissue_fraction, dtype=np.float32))


def read_coords(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read ``coords`` (N, 2) int64 and the file's tiling attributes from coords.h5."""
    with h5py.File(path, "r") as handle:
        coords = handle["coords"][:].astype(np.int64).reshape(-1, 2)
        attrs = {key: attrs_value_to_python(value) for key, value in handle.attrs.items()}
    return coords, attrs


def attrs_value_to_python(value):
    """Convert an HDF5 attribute value (numpy scalar, array or bytes) to a plain Python value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-tile SLIDE --info ... --geojson ... --output coords.h5``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-tile", description=main.__doc__)
    parser.add_argument("slide", help="slide file readable by OpenSlide")
    parser.add_argument("--info", required=True, help="info.json from slides-inspect")
    parser.add_argument("--geojson", required=True, help="tissue polygons from slides-tissue")
    parser.add_argument("--output", required=True, help="coords.h5 to write")
    parser.add_argument("--target-mpp", type=float, default=TilingSettings.target_mpp,
                        help="µm per pixel of the patches (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=TilingSettings.patch_size,
                        help="patch side in pixels at --target-mpp (default %(default)s)")
    parser.add_argument("--min-tissue-fraction", type=float, default=TilingSettings.min_tissue_fraction,
                        help="share of the patch inside tissue needed to keep it (default %(default)s)")
    args = parser.parse_args(argv)
    settings = TilingSettings(target_mpp=args.target_mpp, patch_size=args.patch_size,
                              min_tissue_fraction=args.min_tissue_fraction)
    geojson = json.loads(Path(args.geojson).read_text())
    coords, fraction, attrs = tile_slide(args.slide, info=read_info(args.info), geojson=geojson,
                                         settings=settings)
    write_coords(args.output, coords, fraction, attrs)
