"""Tile a slide: coords.h5 with the level-0 top-left corners of its tissue patches."""

import json
from pathlib import Path

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.inspect import read_info  # noqa: E402
from mmlego.slides.tiling import TilingSettings, tile_slide, write_coords  # noqa: E402

coords, tissue_fraction, attrs = tile_slide(
    snakemake.input.slide,
    info=read_info(snakemake.input.info),
    geojson=json.loads(Path(snakemake.input.geojson).read_text()),
    settings=TilingSettings(**snakemake.params.settings),
)
write_coords(snakemake.output.coords, coords, tissue_fraction, attrs)
