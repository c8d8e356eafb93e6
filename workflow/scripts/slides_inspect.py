"""Write a slide's info.json: levels, objective power and level-0 mpp with its source."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.inspect import inspect_slide, write_info  # noqa: E402

info = inspect_slide(
    snakemake.input.slide,
    slide_id=snakemake.wildcards.slide,
    sheet_mpp=snakemake.params.mpp,
    missing_mpp=snakemake.params.missing_mpp,
)
write_info(info, snakemake.output.info)
