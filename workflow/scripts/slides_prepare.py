"""Run a slide's inspect, tissue and tiling stages, which write info.json, tissue.png,
tissue.geojson and coords.h5.

Each stage reads the previous one's output files, so under slides.on_failure: skip the
failure record that one stage writes is passed on by the next ones.
"""

import logging

from mmlego.logs import log_duration, setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import run_inspect, run_tiling, run_tissue  # noqa: E402
from mmlego.slides.tiling import TilingSettings  # noqa: E402
from mmlego.slides.tissue import TissueSettings  # noqa: E402

logger = logging.getLogger("mmlego.slides.prepare")
slide_id = snakemake.wildcards.slide
slide_path = snakemake.input.slide
on_failure = snakemake.config["slides"]["on_failure"]
tissue_settings = TissueSettings(**snakemake.params.tissue)
tiling_settings = TilingSettings(**snakemake.params.tiling)

with log_duration(logger, f"Inspect stage of slide {slide_id}"):
    run_inspect(
        slide_path,
        snakemake.output.info,
        slide_id=slide_id,
        sheet_mpp=snakemake.params.mpp,
        missing_mpp=snakemake.params.missing_mpp,
        on_failure=on_failure,
    )

with log_duration(logger, f"Tissue stage of slide {slide_id}"):
    run_tissue(
        slide_path,
        info_path=snakemake.output.info,
        png_path=snakemake.output.png,
        geojson_path=snakemake.output.geojson,
        settings=tissue_settings,
        on_failure=on_failure,
    )

with log_duration(logger, f"Tiling stage of slide {slide_id}"):
    run_tiling(
        slide_path,
        info_path=snakemake.output.info,
        geojson_path=snakemake.output.geojson,
        coords_path=snakemake.output.coords,
        settings=tiling_settings,
        on_failure=on_failure,
    )
