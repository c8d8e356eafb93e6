"""LegoMerge of one (cohort, fold) from the latent caches alone: no gradient step."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from mmlego.stages.fusion import run_legomerge  # noqa: E402

fold = json.loads(Path(snakemake.input.fold).read_text())
caches = {modality: getattr(snakemake.input, modality) for modality in snakemake.params.modalities}
run_legomerge(caches, fold["test"], int(snakemake.wildcards.fold), snakemake.output.predictions, snakemake.params.merge)
