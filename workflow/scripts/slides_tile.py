"""Tile a slide: coords.h5 with the level-0 top-left corners of its tissue patches."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import run_tiling  # noqa: E402
from mmlego.slides.tiling import TilingSettings  # noqa: E402

run_tiling(
    snakemake.input.slide,
    info_path=snakemake.input.info,
    geojson_path=snakemake.input.geojson,
    coords_path=snakemake.output.coords,
    settings=TilingSettings(**snakemake.params.settings),
    on_failure=snakemake.config["slides"]["on_failure"],
)
