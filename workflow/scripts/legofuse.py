"""LegoFuse of one (cohort, fold): a few epochs of fine-tuning from the unimodal blocks."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmlego.stages.fusion import run_legofuse  # noqa: E402
from mmlego.stages.inputs import load_job_modalities  # noqa: E402

torch.set_num_threads(snakemake.threads)
modalities = snakemake.params.modalities
datas = load_job_modalities(modalities, snakemake.input, snakemake.params.slides)
run_legofuse(
    dict(zip(modalities, snakemake.input.weights)),
    datas,
    int(snakemake.wildcards.fold),
    snakemake.output.predictions,
    snakemake.params.fuse,
    snakemake.params.training,
)
