"""Package versions, config, input checksums and failed slides recorded with a cohort's results."""

from pathlib import Path

import pandas as pd

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import failed_slides  # noqa: E402
from mmlego.stages.report import write_provenance  # noqa: E402

cohort = pd.read_csv(snakemake.input.cohort, sep="\t", dtype={"case_id": str})
write_provenance(
    snakemake.output[0],
    config=snakemake.params.config,
    data_files=list(snakemake.input.data),
    failed_slides=failed_slides(
        {Path(path).stem: path for path in snakemake.input.features},
        snakemake.params.slide_cases,
        case_ids=cohort["case_id"],
    ),
)
