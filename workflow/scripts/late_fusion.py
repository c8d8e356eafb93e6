"""Late-fusion baseline of one (cohort, fold): the mean of the unimodal blocks' predictions."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.stages.baselines import run_late_fusion  # noqa: E402

run_late_fusion(list(snakemake.input), int(snakemake.wildcards.fold), snakemake.output.predictions)
