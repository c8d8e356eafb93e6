"""Fetch one input file from the data mirror or its public address."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.data import DataFile, fetch, resolve_mirror  # noqa: E402

fetch(
    DataFile.from_mapping(snakemake.params.entry),
    snakemake.output[0],
    mirror=resolve_mirror(snakemake.config["data"]["mirror"]),
)
