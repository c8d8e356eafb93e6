"""Detect a slide's tissue: QC thumbnail with contours and GeoJSON polygons in level-0 pixels."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import run_tissue  # noqa: E402
from mmlego.slides.tissue import TissueSettings  # noqa: E402

run_tissue(
    snakemake.input.slide,
    info_path=snakemake.input.info,
    png_path=snakemake.output.png,
    geojson_path=snakemake.output.geojson,
    settings=TissueSettings(**snakemake.params.settings),
    on_failure=snakemake.config["slides"]["on_failure"],
)
