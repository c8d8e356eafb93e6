"""Whole-slide image stages: inspect, tissue detection, tiling and patch features.

Each stage is a public function plus a ``main(argv)`` command-line entry point:

- ``inspect.inspect_slide`` → ``results/slides/<slide>/info.json``
- ``tissue.detect_slide_tissue`` → ``tissue.png`` (QC) and ``tissue.geojson`` (level-0 pixels)
- ``tiling.tile_slide`` + ``tiling.write_coords`` → ``coords.h5``
- ``features.extract_slide_features`` → ``results/features/<encoder>/<slide>.h5``
- ``precomputed.import_precomputed`` reads CLAM/TRIDENT features in place of the stages above.
"""

from mmlego.slides.encoders import build_encoder, encoder_dirname
from mmlego.slides.features import FeatureSettings, extract_slide_features
from mmlego.slides.inspect import MissingResolutionError, SlideReadError, inspect_slide
from mmlego.slides.precomputed import PrecomputedFeaturesError, import_precomputed, read_features
from mmlego.slides.tiling import TilingSettings, read_coords, tile_slide, write_coords
from mmlego.slides.tissue import TissueSettings, detect_slide_tissue

__all__ = [
    "FeatureSettings",
    "MissingResolutionError",
    "PrecomputedFeaturesError",
    "SlideReadError",
    "TilingSettings",
    "TissueSettings",
    "build_encoder",
    "detect_slide_tissue",
    "encoder_dirname",
    "extract_slide_features",
    "import_precomputed",
    "inspect_slide",
    "read_coords",
    "read_features",
    "tile_slide",
    "write_coords",
]
