"""Early-fusion baseline of one (cohort, fold): one network on the concatenated modalities."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmlego.stages.baselines import run_early_fusion  # noqa: E402
from mmlego.stages.inputs import load_job_modalities  # noqa: E402

torch.set_num_threads(snakemake.threads)
datas = load_job_modalities(snakemake.params.modalities, snakemake.input, snakemake.params.slides)
run_early_fusion(
    datas,
    int(snakemake.wildcards.fold),
    snakemake.output.predictions,
    snakemake.params.network,
    snakemake.params.training,
)
