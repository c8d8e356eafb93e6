"""Command-line entry point: ``mmlego <command> [options]``.

Each command is a function ``fn(argv)`` of a package module, imported only when that
command runs, so ``mmlego --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

# command name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("mmlego.data:main", "fetch input files by address and sha256, or from a mirror"),
    "slides-inspect": ("mmlego.slides.inspect:main", "record a slide's levels, vendor and mpp"),
    "slides-tissue": ("mmlego.slides.tissue:main", "detect tissue; write a QC image and GeoJSON"),
    "slides-tile": ("mmlego.slides.tiling:main", "tile the tissue at a target resolution"),
    "slides-features": ("mmlego.slides.features:main", "encode a slide's patches into features"),
    "slides-export-onnx": ("mmlego.slides.features:export_main", "export a patch encoder to ONNX"),
    "slides-import": ("mmlego.slides.precomputed:main", "check and import CLAM/TRIDENT features"),
    "cohort": ("mmlego.cohort:main", "collapse a cohort table to patients; write folds"),
    "omics": ("mmlego.omics:main", "fit a modality on a fold's training patients; write AnnData"),
    "train-block": ("mmlego.stages.commands:train_block_main", "train one modality's LegoBlock"),
    "encode-latents": ("mmlego.stages.commands:encode_latents_main", "write a block's latent cache"),
    "legomerge": ("mmlego.stages.commands:legomerge_main", "merge latent caches; predict a fold"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mmlego <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in sorted(COMMANDS.items())]
    lines += ["", "Run `mmlego <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"mmlego: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[command][0].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return function(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
