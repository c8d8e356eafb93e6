"""Pre-extracted patch features in the CLAM or TRIDENT layout, used in place of the slide stages.

A folder contains one ``<slide_id>.h5`` per slide with ``features`` (N, D) and ``coords``
(N, 2). The workflow validates each file and copies it to
``results/features/precomputed/<slide_id>.h5`` in this package's layout, so downstream
stages read one format. CLAM's ``.pt`` files are pickles and are never loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import h5py
import numpy as np

from mmlego.atomic import atomic_path
from mmlego.data import sha256_of

logger = logging.getLogger(__name__)


class PrecomputedFeaturesError(ValueError):
    """A pre-extracted features file is missing or does not have the expected layout."""


def find_precomputed(directory: str | Path, slide_id: str) -> Path:
    """Return ``<directory>/<slide_id>.h5``, or raise ``PrecomputedFeaturesError`` saying what to do."""
    directory = Path(directory)
    path = directory / f"{slide_id}.h5"
    if path.is_file():
        return path
    if (directory / f"{slide_id}.pt").is_file():
        raise PrecomputedFeaturesError(
            f"{directory} has {slide_id}.pt but no {slide_id}.h5. .pt files are pickles and are not "
            f"loaded; point slides.precomputed_features at the folder of .h5 files (CLAM's h5_files).")
    raise PrecomputedFeaturesError(f"Pre-extracted features for slide {slide_id} not found: {path}")


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read and check a features file: return ``features`` (N, D) float32, ``coords`` (N, 2) int64 and root attributes."""
    # Imported here, not at the top: the workflow imports this module at parse time.
    from mmlego.slides.tiling import attrs_value_to_python

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise PrecomputedFeaturesError(f"Cannot open {path} as HDF5: {error}") from error
    with handle:
        for name in ("features", "coords"):
            if name not in handle:
                raise PrecomputedFeaturesError(
                    f"{path} has no `{name}` dataset (found: {sorted(handle)}); expected `features` "
                    f"(N, D) and `coords` (N, 2).")
        features, coords = handle["features"][:], handle["coords"][:]
        attrs = {key: attrs_value_to_python(value) for key, value in handle.attrs.items()}
    if features.ndim != 2:
        raise PrecomputedFeaturesError(f"{path}: `features` must be 2-D (N, D), got shape {features.shape}.")
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(features):
        raise PrecomputedFeaturesError(
            f"{path}: `coords` must be ({len(features)}, 2) to match `features`, got shape {coords.shape}.")
    if not np.isfinite(features).all():
        raise PrecomputedFeaturesError(f"{path}: `features` contains NaN or infinite values.")
    return features.astype(np.float32), coords.astype(np.int64), attrs


def import_precomputed(source: str | Path, output: str | Path, *, slide_id: str) -> dict:
    """Validate a pre-extracted features file and write it in this package's layout.

    The copy keeps the source's root attributes and adds ``encoder = "precomputed"``, the
    source path and its sha256. Returns ``{"patches": N, "feature_dim": D}``.
    """
    features, coords, attrs = read_features(source)
    attrs = {**attrs, "slide_id": slide_id, "encoder": attrs.get("encoder", "precomputed"),
             "source_file": str(source), "source_sha256": sha256_of(source),
             "feature_dim": int(features.shape[1])}
    with atomic_path(output) as tmp:
        with h5py.File(tmp, "w") as handle:
            for key, value in attrs.items():
                handle.attrs[key] = value
            handle.create_dataset("features", data=features)
            handle.create_dataset("coords", data=coords)
    if len(features) == 0:
        logger.warning("Slide %s: pre-extracted features file %s has no patches", slide_id, source)
    logger.info("Slide %s: imported %d × %d features from %s", slide_id, *features.shape, source)
    return {"patches": int(features.shape[0]), "feature_dim": int(features.shape[1])}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-import DIRECTORY --slide-id ID --output features.h5``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-import", description=main.__doc__)
    parser.add_argument("directory", help="folder of <slide_id>.h5 files with features and coords")
    parser.add_argument("--slide-id", required=True, help="slide to import")
    parser.add_argument("--output", required=True, help="features .h5 to write")
    args = parser.parse_args(argv)
    import_precomputed(find_precomputed(args.directory, args.slide_id), args.output, slide_id=args.slide_id)
