"""Detect a slide's tissue: QC thumbnail with contours and GeoJSON polygons in level-0 pixels."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.inspect import read_info  # noqa: E402
from mmlego.slides.tissue import TissueSettings, detect_slide_tissue  # noqa: E402

detect_slide_tissue(
    snakemake.input.slide,
    info=read_info(snakemake.input.info),
    settings=TissueSettings(**snakemake.params.settings),
    png_path=snakemake.output.png,
    geojson_path=snakemake.output.geojson,
)
