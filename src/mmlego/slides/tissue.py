"""Tissue detection on a thumbnail at a fixed physical resolution, with QuPath-ready polygons.

The detector thresholds HSV saturation with Otsu's method, because stained tissue is
coloured while glass and background are grey or white. It smooths the mask by
morphological closing and opening, drops regions and fills holes below physical area
limits, and traces the regions as polygons with holes. Polygons are stored in level-0 pixel coordinates, so they
can be edited in QuPath and are read back by the tiling stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import color, draw, filters, measure, morphology

from mmlego.atomic import atomic_path
from mmlego.slides.inspect import open_slide, read_info, read_region_checked

logger = logging.getLogger(__name__)

THUMBNAIL_CHUNK = 1024  # thumbnail pixels per side read at once; bounds memory on large slides


@dataclass(frozen=True)
class TissueSettings:
    """Tissue detector parameters, in physical units so they mean the same at every scan resolution."""

    thumbnail_mpp: float = 8.0
    saturation_floor: float = 0.05
    closing_um: float = 32.0
    opening_um: float = 16.0
    min_region_area_mm2: float = 0.02
    min_hole_area_mm2: float = 0.01


# -- thumbnail -------------------------------------------------------------------------


def _composite_on_white(region: Image.Image) -> np.ndarray:
    """RGBA from OpenSlide → RGB uint8, with transparent (unscanned) pixels shown as white."""
    rgba = np.asarray(region)
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def read_thumbnail(slide, path, *, level0_mpp: float, thumbnail_mpp: float) -> tuple[np.ndarray, float]:
    """Read the slide at ``thumbnail_mpp`` µm per pixel, chunk by chunk from the best pyramid level.

    Returns ``(rgb, downsample)``: an (H, W, 3) uint8 image and the level-0 pixels per
    thumbnail pixel. The full-resolution level is read only when it is the best level, and
    then one chunk at a time.
    """
    downsample = max(thumbnail_mpp / level0_mpp, 1.0)
    level = slide.get_best_level_for_downsample(downsample)
    level_downsample = slide.level_downsamples[level]
    width0, height0 = slide.dimensions
    width, height = max(1, round(width0 / downsample)), max(1, round(height0 / downsample))
    thumbnail = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, THUMBNAIL_CHUNK):
        for left in range(0, width, THUMBNAIL_CHUNK):
            chunk_w, chunk_h = min(THUMBNAIL_CHUNK, width - left), min(THUMBNAIL_CHUNK, height - top)
            location = (round(left * downsample), round(top * downsample))
            read_size = (math.ceil(chunk_w * downsample / level_downsample),
                         math.ceil(chunk_h * downsample / level_downsample))
            region = read_region_checked(slide, path, location, level, read_size)
            region = region.resize((chunk_w, chunk_h), Image.Resampling.BILINEAR)
            thumbnail[top:top + chunk_h, left:left + chunk_w] = _composite_on_white(region)
    return thumbnail, downsample


# -- mask -------------------------------------------------------------------------------


def detect_tissue_mask(rgb: np.ndarray, *, mpp: float, settings: TissueSettings) -> np.ndarray:
    """Return a boolean tissue mask for an (H, W, 3) uint8 image at ``mpp`` µm per pixel."""
    saturation = color.rgb2hsv(rgb)[..., 1]
    saturation = filters.median(saturation, morphology.disk(2))
    threshold = settings.saturation_floor
    if saturation.max() > saturation.min():
        threshold = max(threshold, filters.threshold_otsu(saturation))
    mask = saturation > threshold
    mask = morphology.closing(mask, morphology.disk(max(1, round(settings.closing_um / mpp))))
    mask = morphology.opening(mask, morphology.disk(max(1, round(settings.opening_um / mpp))))
    pixel_area_mm2 = (mpp / 1000.0) ** 2
    # Holes are small background components; background touching the border is not a hole.
    background = ~mask
    mask = ~_drop_small_components(background, settings.min_hole_area_mm2 / pixel_area_mm2,
                                   connectivity=1, keep_border=True)
    return _drop_small_components(mask, settings.min_region_area_mm2 / pixel_area_mm2,
                                  connectivity=2, keep_border=False)


def _drop_small_components(mask: np.ndarray, min_pixels: float, *, connectivity: int,
                           keep_border: bool) -> np.ndarray:
    """Clear connected components of fewer than ``min_pixels`` pixels, optionally sparing those on the border."""
    labels = measure.label(mask, connectivity=connectivity)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    if keep_border:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[border[border > 0]] = True
    return keep[labels]


# -- polygons ---------------------------------------------------------------------------


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def _trace_ring(component: np.ndarray, offset: tuple[int, int], *, clockwise: bool) -> np.ndarray | None:
    """Trace the outer boundary of one connected component as a closed (x, y) ring in mask pixels."""
    padded = np.pad(component, 1)
    contours = measure.find_contours(padded.astype(np.uint8), 0.5)
    if not contours:
        return None
    longest = max(contours, key=len)
    ring = measure.approximate_polygon(longest, tolerance=0.5)
    xy = np.stack([ring[:, 1] - 1 + offset[1], ring[:, 0] - 1 + offset[0]], axis=1)
    if len(xy) < 4:
        return None
    if not np.array_equal(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    # Image axes point right and down, so a positive shoelace area is clockwise on screen.
    if (_signed_area(xy) > 0) != clockwise:
        xy = xy[::-1]
    return xy


def mask_to_polygons(mask: np.ndarray) -> list[list[np.ndarray]]:
    """Trace each connected region of ``mask`` as ``[exterior, hole, ...]`` rings of (x, y) mask pixels."""
    polygons = []
    labels = measure.label(mask, connectivity=2)
    for region in measure.regionprops(labels):
        top, left, _, _ = region.bbox
        exterior = _trace_ring(region.image_filled, (top, left), clockwise=False)
        if exterior is None:
            continue
        rings = [exterior]
        holes = measure.label(region.image_filled & ~region.image, connectivity=1)
        for hole in measure.regionprops(holes):
            hole_top, hole_left, _, _ = hole.bbox
            ring = _trace_ring(hole.image, (top + hole_top, left + hole_left), clockwise=True)
            if ring is not None:
                rings.append(ring)
        polygons.append(rings)
    return polygons


def polygons_to_geojson(polygons: list[list[np.ndarray]], *, downsample: float, slide_id: str) -> dict:
    """Build a GeoJSON FeatureCollection with rings scaled to level-0 pixel coordinates.

    Each feature is a QuPath annotation classified "Tissue" (QuPath reads ``objectType``
    and ``classification``).
    """
    features = []
    for index, rings in enumerate(polygons):
        # Mask pixel (i, j) covers level-0 [j, j+1) × [i, i+1) times the downsample, and
        # find_contours traces pixel centres, hence the half-pixel shift.
        coordinates = [((ring + 0.5) * downsample).round(1).tolist() for ring in rings]
        features.append({
            "type": "Feature",
            "id": f"{slide_id}-tissue-{index}",
            "geometry": {"type": "Polygon", "coordinates": coordinates},
            "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
        })
    return {"type": "FeatureCollection", "features": features}


def rasterize_tissue(geojson: dict, *, origin: tuple[float, float], pixel_size: float,
                     shape: tuple[int, int]) -> np.ndarray:
    """Rasterise tissue polygons (level-0 coordinates) onto a grid.

    The grid's pixel (i, j) covers level-0 x in ``origin[0] + [j, j+1) · pixel_size`` and y
    likewise; ``shape`` is (rows, columns). Holes are cleared inside their own polygon only,
    so tissue inside another polygon's hole stays set.
    """
    mask = np.zeros(shape, dtype=bool)
    for feature in geojson.get("features", []):
        geometry = feature.get("geometry") or {}
        polygons = {"Polygon": [geometry.get("coordinates")],
                    "MultiPolygon": geometry.get("coordinates")}.get(geometry.get("type"), [])
        for rings in polygons:
            scaled = [(np.asarray(ring, dtype=float) - origin) / pixel_size - 0.5 for ring in rings]
            rows, cols = draw.polygon(scaled[0][:, 1], scaled[0][:, 0], shape=shape)
            polygon_mask = np.zeros(shape, dtype=bool)
            polygon_mask[rows, cols] = True
            for hole in scaled[1:]:
                rows, cols = draw.polygon(hole[:, 1], hole[:, 0], shape=shape)
                polygon_mask[rows, cols] = False
            mask |= polygon_mask
    return mask


# -- outputs ----------------------------------------------------------------------------


def render_qc(rgb: np.ndarray, polygons: list[list[np.ndarray]], path: str | Path) -> None:
    """Write the thumbnail with tissue exteriors in green and holes in blue, as PNG."""
    image = Image.fromarray(rgb)
    canvas = ImageDraw.Draw(image)
    line_width = max(1, round(max(rgb.shape[:2]) / 400))
    for rings in polygons:
        for index, ring in enumerate(rings):
            colour = (0, 170, 0) if index == 0 else (0, 90, 255)
            canvas.line([tuple(point) for point in (ring + 0.5).tolist()], fill=colour, width=line_width)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def detect_slide_tissue(path: str | Path, *, info: dict, settings: TissueSettings = TissueSettings(),
                        png_path: str | Path, geojson_path: str | Path) -> dict:
    """Detect tissue on one slide; write the QC PNG and the GeoJSON; return a summary.

    ``info`` is the slide's ``info.json`` content (its ``mpp`` sets the physical scale). The
    summary contains the number of regions and the tissue area in mm². A slide without tissue
    gives an empty FeatureCollection and a logged warning.
    """
    slide_id = info["slide_id"]
    with open_slide(path) as slide:
        rgb, downsample = read_thumbnail(slide, path, level0_mpp=info["mpp"],
                                         thumbnail_mpp=settings.thumbnail_mpp)
    mask_mpp = info["mpp"] * downsample
    mask = detect_tissue_mask(rgb, mpp=mask_mpp, settings=settings)
    polygons = mask_to_polygons(mask)
    geojson = polygons_to_geojson(polygons, downsample=downsample, slide_id=slide_id)
    tissue_area_mm2 = float(mask.sum()) * (mask_mpp / 1000.0) ** 2
    geojson["properties"] = {"slide_id": slide_id, "status": "ok", "tissue_area_mm2": tissue_area_mm2,
                             "thumbnail_downsample": downsample, "settings": asdict(settings)}
    if not polygons:
        logger.warning("Slide %s: no tissue found (thumbnail %d × %d px at %.3g µm/px)",
                       slide_id, rgb.shape[1], rgb.shape[0], mask_mpp)
    render_qc(rgb, polygons, png_path)
    with atomic_path(geojson_path) as tmp:
        tmp.write_text(json.dumps(geojson) + "\n")
    logger.info("Slide %s: %d tissue regions, %.3f mm²", slide_id, len(polygons), tissue_area_mm2)
    return {"regions": len(polygons), "tissue_area_mm2": tissue_area_mm2}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--<name>`` option per ``TissueSettings`` field."""
    for name, default in asdict(TissueSettings()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=default,
                            help=f"tissue setting {name} (default {default})")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-tissue SLIDE --info info.json --png ... --geojson ...``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-tissue", description=main.__doc__)
    parser.add_argument("slide", help="slide file readable by OpenSlide")
    parser.add_argument("--info", required=True, help="info.json from slides-inspect")
    parser.add_argument("--png", required=True, help="QC thumbnail with tissue contours to write")
    parser.add_argument("--geojson", required=True, help="tissue polygons (level-0 pixels) to write")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = TissueSettings(**{name: getattr(args, name) for name in asdict(TissueSettings())})
    detect_slide_tissue(args.slide, info=read_info(args.info), settings=settings,
                        png_path=args.png, geojson_path=args.geojson)
