"""Write a slide's info.json: levels, objective power and level-0 mpp with its source."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import run_inspect  # noqa: E402

run_inspect(
    snakemake.input.slide,
    snakemake.output.info,
    slide_id=snakemake.wildcards.slide,
    sheet_mpp=snakemake.params.mpp,
    missing_mpp=snakemake.params.missing_mpp,
    on_failure=snakemake.config["slides"]["on_failure"],
)
