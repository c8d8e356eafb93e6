"""Elastic-net Cox baseline of one (cohort, fold), penalty by inner cross-validation."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.stages.baselines import run_coxnet  # noqa: E402
from mmlego.stages.inputs import load_job_modalities  # noqa: E402

datas = load_job_modalities(snakemake.params.modalities, snakemake.input, snakemake.params.slides)
run_coxnet(datas, int(snakemake.wildcards.fold), snakemake.output.predictions, snakemake.params.coxnet)
