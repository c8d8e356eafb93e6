"""Command-line entry points of the modelling stages, for use without Snakemake.

Options that the workflow takes from the config are read here from a workflow config
YAML (``--config``), with the schema's defaults filled in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from mmlego.logs import setup_logging

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def _read_config(path: str) -> dict[str, Any]:
    """Read a workflow config and fill in the schema's defaults when the schema is present."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    if SCHEMA.is_file():
        from snakemake.utils import validate

        validate(config, str(SCHEMA), set_default=True)
    return config


def _modality_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modality", required=True, help="modality name")
    parser.add_argument("--h5ad", help="AnnData of a table modality for this fold")
    parser.add_argument("--cohort-tsv", help="cohort.tsv (slide modality)")
    parser.add_argument("--fold-json", help="splits/fold_<k>.json (slide modality)")
    parser.add_argument("--features", nargs="*", default=[], help="<slide_id>.h5 feature files (slide modality)")
    parser.add_argument("--slide-sheet", help="slide sheet TSV mapping slide_id to case_id (slide modality)")


def _load(args, config):
    import pandas as pd

    from mmlego.stages.inputs import load_modality

    slide_cases = {}
    if args.slide_sheet:
        sheet = pd.read_csv(args.slide_sheet, sep="\t", comment="#", dtype=str)
        slide_cases = dict(zip(sheet["slide_id"], sheet["case_id"]))
    return load_modality(
        args.modality, h5ad=args.h5ad, cohort_tsv=args.cohort_tsv, fold_json=args.fold_json,
        feature_files=args.features, slide_cases=slide_cases, n_bins=config["survival"]["n_bins"],
        on_failure=config.get("slides", {}).get("on_failure", "error"),
    )


def train_block_main(argv: list[str] | None = None) -> int:
    """Train the LegoBlock of one modality and fold; write the checkpoint and its predictions."""
    from mmlego.stages.blocks import save_block, train_block, write_block_predictions

    parser = argparse.ArgumentParser(prog="mmlego train-block", description=train_block_main.__doc__)
    parser.add_argument("--config", required=True, help="workflow config YAML (blocks and training sections)")
    parser.add_argument("--fold", type=int, required=True, help="fold index")
    _modality_args(parser)
    parser.add_argument("--output-dir", required=True, help="writes fold_<k>.safetensors/.json and predictions")
    args = parser.parse_args(argv)
    setup_logging()
    config = _read_config(args.config)
    data = _load(args, config)
    block, summary = train_block(
        data, fold=args.fold, block_options=config["blocks"], train_options=config["training"]
    )
    out = Path(args.output_dir)
    save_block(block, summary, out / f"fold_{args.fold}.safetensors", out / f"fold_{args.fold}.training.json")
    write_block_predictions(block, data, args.fold, out / f"predictions_fold_{args.fold}.tsv", summary["seconds"])
    return 0


def encode_latents_main(argv: list[str] | None = None) -> int:
    """Encode every patient with the modality into a latent cache (HDF5)."""
    from mmlego.stages.blocks import encode_latents, load_block, write_latent_cache

    parser = argparse.ArgumentParser(prog="mmlego encode-latents", description=encode_latents_main.__doc__)
    parser.add_argument("--config", required=True, help="workflow config YAML (survival section)")
    parser.add_argument("--fold", type=int, required=True, help="fold index")
    parser.add_argument("--block", required=True, help="block weights (.safetensors, JSON beside it)")
    _modality_args(parser)
    parser.add_argument("--output", required=True, help="latent cache .h5 to write")
    args = parser.parse_args(argv)
    setup_logging()
    data = _load(args, _read_config(args.config))
    block = load_block(args.block)
    case_ids, latents = encode_latents(block, data)
    write_latent_cache(
        args.output, case_ids, latents, block, fold=args.fold, modality=args.modality,
        inner_edges=data.inner_edges, block_path=args.block,
    )
    return 0


def legomerge_main(argv: list[str] | None = None) -> int:
    """Predict a fold's test patients with LegoMerge from latent caches (no gradient step)."""
    from mmlego.stages.fusion import run_legomerge

    parser = argparse.ArgumentParser(prog="mmlego legomerge", description=legomerge_main.__doc__)
    parser.add_argument("--config", required=True, help="workflow config YAML (merge section)")
    parser.add_argument("--fold-json", required=True, help="splits/fold_<k>.json; its test patients are predicted")
    parser.add_argument("--cache", nargs="+", required=True, metavar="MODALITY=PATH", help="latent caches")
    parser.add_argument("--output", required=True, help="predictions TSV (a JSON record is written beside it)")
    args = parser.parse_args(argv)
    setup_logging()
    config = _read_config(args.config)
    caches = dict(item.split("=", 1) for item in args.cache)
    fold = json.loads(Path(args.fold_json).read_text())
    run_legomerge(caches, fold["test"], int(fold["fold"]), args.output, config["merge"])
    return 0
