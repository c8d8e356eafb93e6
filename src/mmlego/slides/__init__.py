"""Whole-slide image stages: inspect, tissue detection, tiling and patch features.

Each stage is a public function plus a ``main(argv)`` command-line entry point:

- ``inspect.inspect_slide`` → ``results/slides/<slide>/info.json``
- ``tissue.detect_slide_tissue`` → ``tissue.png`` (QC) and ``tissue.geojson`` (level-0 pixels)
- ``tiling.tile_slide`` + ``tiling.write_coords`` → ``coords.h5``
- ``features.extract_slide_features`` → ``results/features/<encoder>/<slide>.h5``
- ``precomputed.import_precomputed`` reads CLAM/TRIDENT features in place of the stages above.

Submodules are imported one by one (``from mmlego.slides import tissue``), so reading a
slide sheet at workflow parse time does not load torch.
"""
