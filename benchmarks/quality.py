"""Benchmark the survival quality of MM-Lego and the baselines on four TCGA cohorts.

For each cohort this script writes a complete workflow config to
benchmarks/configs/<cohort>.yaml (demo defaults, no slide stages), runs the workflow on it
in a fresh working directory, and then runs the ablations:

* ``legomerge_sum`` and ``legomerge_mean``: LegoMerge with another latent merge, computed
  from the cached latents of the main run (no training).
* ``legomerge_without_<modality>``: LegoMerge of all kept modalities but one, from the
  same cached latents, to show what each modality adds.
* ``legomerge_validation_weighted``: LegoMerge with each modality weighted by its block's
  best inner-validation C-index above 0.5, from the same cached latents.
* ``legomerge_validation_selected``: LegoMerge of the subset of modalities whose merge
  scores the highest Harrell's C on the fold's inner validation patients, from the same
  cached latents: whether the inner validation split can tell which modalities to merge.
* ``legofuse_weave``: LegoFuse in ``weave`` mode, fine-tuned from the main run's blocks.
* ``legomerge_no_fft``, ``legofuse_no_fft`` and ``block_<modality>_no_fft``: blocks
  retrained with ``blocks.frequency_domain: false``, in a second workflow run that builds
  only these targets.

Every ablation is scored with ``mmlego.evaluate.fold_metrics`` on the same held-out folds.
Per-fold scores go to benchmarks/out/quality/<cohort>.tsv and the mean and sample standard
deviation of Harrell's and Uno's C per method to benchmarks/out/quality.json, which
benchmarks/collect.py merges into benchmarks/results.json.

Hyper-parameters are the demo config's, chosen before any run. Early stopping uses only
the inner validation split of each fold's training patients, never the held-out fold.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEFILE = REPOSITORY / "workflow" / "Snakefile"
DEMO_CONFIG = REPOSITORY / "config" / "config.yaml"
CONFIG_DIRECTORY = REPOSITORY / "benchmarks" / "configs"
OUT_DIRECTORY = REPOSITORY / "benchmarks" / "out"
DEFAULT_MIRROR = Path("/work/shared/data")

# Modalities of each cohort's PORPOISE table: KIRP has no copy-number columns and UCEC
# no RNA columns, so those modalities are left out instead of being skipped at run time.
COHORT_MODALITIES = {
    "tcga_blca": ["rna", "cnv", "mut", "clinical"],
    "tcga_kirp": ["rna", "mut", "clinical"],
    "tcga_ucec": ["cnv", "mut", "clinical"],
    "tcga_brca": ["rna", "cnv", "mut", "clinical"],
}
COHORT_ORDER = list(COHORT_MODALITIES)
N_FOLDS = 5
SUMMARY_METRICS = ("c_index", "c_index_ipcw")
ABLATIONS = ["merge", "weighted", "selected", "leave_one_out", "weave", "no_fft"]


def read_manifest(mirror: Path) -> dict[str, dict]:
    """Read the mirror's MANIFEST.tsv (path, size_bytes, sha256, source_url) keyed by path."""
    with open(mirror / "MANIFEST.tsv", newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}


def cohort_files(cohort: str) -> list[str]:
    """Return the data paths one cohort needs: its table and its five PORPOISE split files."""
    splits = [f"splits/5foldcv/{cohort}/splits_{fold}.csv" for fold in range(N_FOLDS)]
    return [f"tcga_omics/{cohort}_all_clean.csv.zip", *splits]


def cohort_config(cohort: str, manifest: dict[str, dict], *, frequency_domain: bool = True) -> dict:
    """Build a complete workflow config for one cohort from the demo config's defaults."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    files = []
    for path in cohort_files(cohort):
        if path not in manifest:
            raise KeyError(f"{path} is missing from the data manifest; add it or fix the mirror path")
        entry = manifest[path]
        files.append(
            {"path": path, "url": entry["source_url"], "sha256": entry["sha256"], "size_bytes": int(entry["size_bytes"])}
        )
    config["data"]["mirror"] = None
    config["data"]["files"] = files
    config["cohorts"] = {
        cohort: {
            "table": f"resources/tcga_omics/{cohort}_all_clean.csv.zip",
            "modalities": COHORT_MODALITIES[cohort],
            "on_empty": None,
            "splits": {
                "files": f"resources/splits/5foldcv/{cohort}/splits_{{fold}}.csv",
                "n_folds": N_FOLDS,
                "seed": 0,
                "inner_validation_fraction": 0.2,
            },
        }
    }
    config["modalities"] = {name: config["modalities"][name] for name in COHORT_MODALITIES[cohort]}
    config["slides"] = {"sheet": None}
    config["blocks"]["frequency_domain"] = frequency_domain
    return config


def write_config(config: dict, path: Path, header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {header}\n" + yaml.safe_dump(config, sort_keys=False))


def run_workflow(workdir: Path, configfile: Path, mirror: Path, cores: int, targets: list[str] = (),
                 extra_args: list[str] = ()) -> float:
    """Run the workflow in ``workdir`` with ``extra_args`` for snakemake; return its wall time in seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    if (workdir / "config").exists():
        raise RuntimeError(f"{workdir}/config exists; the Snakefile would merge it into the benchmark config")
    command = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(configfile), "--cores", str(cores), *extra_args, *targets,
    ]
    print("+", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "MMLEGO_DATA_MIRROR": str(mirror)})
    return time.perf_counter() - started


def fold_ids(workdir: Path, cohort: str) -> list[int]:
    return sorted(int(path.stem.split("_")[1]) for path in (workdir / "results" / cohort / "splits").glob("fold_*.json"))


def score_predictions(workdir: Path, cohort: str, prediction_paths: dict[tuple[str, int], Path]):
    """Score prediction files on the main run's labels and folds; return the long metrics table."""
    import pandas as pd

    from mmlego.evaluate import metrics_table

    labels = pd.read_csv(workdir / "results" / cohort / "cohort.tsv", sep="\t", dtype={"case_id": str})
    labels = labels.set_index("case_id")
    train_ids = {
        fold: json.loads((workdir / "results" / cohort / "splits" / f"fold_{fold}.json").read_text())["train"]
        for fold in fold_ids(workdir, cohort)
    }
    return metrics_table(prediction_paths, labels, train_ids)


def validation_weights(workdir: Path, cohort: str, fold: int, modalities: list[str]) -> dict[str, float]:
    """Weigh each block by how far its best inner-validation C-index is above chance (0.5).

    Only the inner validation split of the fold's training patients is used. A block at or
    below chance keeps a small weight (0.01), because merge weights must be positive.
    """
    weights = {}
    for modality in modalities:
        path = workdir / "results" / cohort / "blocks" / modality / f"fold_{fold}.training.json"
        weights[modality] = max(float(json.loads(path.read_text())["best_score"]) - 0.5, 0.01)
    return weights


def validation_selected_modalities(workdir: Path, cohort: str, fold_json: dict, caches: dict[str, Path],
                                   merge_options: dict) -> list[str]:
    """Return the subset of modalities whose LegoMerge has the best inner-validation Harrell's C.

    Every non-empty subset is merged on the fold's inner validation patients only; ties go
    to the larger subset. The held-out patients are not looked at.
    """
    import itertools

    import numpy as np
    import pandas as pd

    from mmlego.metrics import harrell_c
    from mmlego.stages.fusion import legomerge_predict

    labels = pd.read_csv(workdir / "results" / cohort / "cohort.tsv", sep="\t", dtype={"case_id": str})
    labels = labels.set_index("case_id")
    validation = fold_json["validation"]
    best, best_score = list(caches), -np.inf
    for size in range(1, len(caches) + 1):
        for subset in itertools.combinations(caches, size):
            risk, _, _ = legomerge_predict({m: caches[m] for m in subset}, validation, **merge_options)
            keep = np.isfinite(risk)
            rows = labels.loc[np.asarray(validation)[keep]]
            score = harrell_c(risk[keep], rows["survival_months"].to_numpy(), rows["censorship"].to_numpy())
            if score >= best_score:
                best, best_score = list(subset), score
    return best


def merge_ablation(
    workdir: Path, cohort: str, method: str, output_root: Path, *, leave_out: str | None = None,
    weighted: bool = False, selected: bool = False,
) -> dict[tuple[str, int], Path]:
    """Run LegoMerge with latent merge ``method`` on the main run's cached latents.

    With ``leave_out`` the merge uses every kept modality but that one, and the method is
    named ``legomerge_without_<modality>``. With ``weighted`` the latents and heads are
    weighted by ``validation_weights`` (method ``legomerge_validation_weighted``). With
    ``selected`` each fold merges the modalities ``validation_selected_modalities`` picks
    (method ``legomerge_validation_selected``).
    """
    import numpy as np

    from mmlego.predictions import PredictionRecord, write_predictions
    from mmlego.stages.blocks import read_latent_cache
    from mmlego.stages.fusion import legomerge_predict

    merge_options = dict(used_config(cohort)["merge"])
    merge_options["method"] = method
    modalities = [m for m in kept_modalities(workdir, cohort) if m != leave_out]
    if leave_out:
        name = f"legomerge_without_{leave_out}"
    elif weighted:
        name = "legomerge_validation_weighted"
    elif selected:
        name = "legomerge_validation_selected"
    else:
        name = f"legomerge_{method}"
    paths = {}
    for fold in fold_ids(workdir, cohort):
        fold_json = json.loads((workdir / "results" / cohort / "splits" / f"fold_{fold}.json").read_text())
        caches = {m: workdir / "results" / cohort / "latents" / m / f"fold_{fold}.h5" for m in modalities}
        if weighted:
            merge_options["weights"] = validation_weights(workdir, cohort, fold, modalities)
        if selected:
            chosen = validation_selected_modalities(workdir, cohort, fold_json, caches, merge_options)
            caches = {m: caches[m] for m in chosen}
        started = time.perf_counter()
        risk, curve, _ = legomerge_predict(caches, fold_json["test"], **merge_options)
        keep = np.isfinite(risk)
        edges = read_latent_cache(next(iter(caches.values())))["inner_edges"]
        record = PredictionRecord(
            method=name, fold=fold, inner_edges=np.asarray(edges).tolist(), gradient_steps=0,
            seconds=time.perf_counter() - started, details={**merge_options, "modalities": list(caches)},
        )
        path = output_root / name / f"fold_{fold}.tsv"
        write_predictions(path, np.asarray(fold_json["test"])[keep], risk[keep], curve[keep], record)
        paths[(name, fold)] = path
    return paths


def weave_ablation(workdir: Path, cohort: str, output_root: Path, threads: int) -> dict[tuple[str, int], Path]:
    """Fine-tune LegoFuse in ``weave`` mode from the main run's blocks, fold by fold."""
    import torch

    from mmlego.stages.fusion import run_legofuse
    from mmlego.stages.inputs import load_table_modality

    torch.set_num_threads(threads)
    config = used_config(cohort)
    fuse_options = {**config["fuse"], "mode": "weave"}
    modalities = kept_modalities(workdir, cohort)
    results = workdir / "results" / cohort
    paths = {}
    for fold in fold_ids(workdir, cohort):
        blocks = {m: results / "blocks" / m / f"fold_{fold}.safetensors" for m in modalities}
        datas = [load_table_modality(results / "modalities" / m / f"fold_{fold}.h5ad") for m in modalities]
        path = output_root / "legofuse_weave" / f"fold_{fold}.tsv"
        run_legofuse(blocks, datas, fold, path, fuse_options, config["training"])
        paths[("legofuse_weave", fold)] = path
    return paths


def kept_modalities(workdir: Path, cohort: str) -> list[str]:
    """Return the modalities the workflow kept for the cohort, in config order."""
    kept = json.loads((workdir / "results" / cohort / "modalities.json").read_text())["modalities"]
    return [m for m in COHORT_MODALITIES[cohort] if m in kept]


def used_config(cohort: str) -> dict:
    """Return the config the cohort's main workflow run used, as written by this script."""
    return yaml.safe_load((CONFIG_DIRECTORY / f"{cohort}.yaml").read_text())


def no_fft_targets(cohort: str, modalities: list[str]) -> list[str]:
    methods = ["legomerge", "legofuse", *[f"block_{m}" for m in modalities]]
    return [f"results/{cohort}/predictions/{method}/fold_{fold}.tsv" for method in methods for fold in range(N_FOLDS)]


def summarise(metrics) -> dict:
    """Return {method: {c_index_mean, c_index_sd, c_index_ipcw_mean, c_index_ipcw_sd, n_folds}}."""
    summary = {}
    for method, rows in metrics.groupby("method", sort=False):
        entry = {}
        for metric in SUMMARY_METRICS:
            values = rows.loc[rows["metric"] == metric, "value"].astype(float)
            entry[f"{metric}_mean"] = round(float(values.mean()), 4)
            entry[f"{metric}_sd"] = round(float(values.std(ddof=1)), 4) if len(values) > 1 else None
        entry["n_folds"] = int(rows["fold"].nunique())
        summary[method] = entry
    return summary


def run_cohort(cohort: str, args: argparse.Namespace, manifest: dict[str, dict]) -> dict:
    """Run the main workflow and the requested ablations of one cohort; return its summary."""
    import pandas as pd

    configfile = CONFIG_DIRECTORY / f"{cohort}.yaml"
    write_config(cohort_config(cohort, manifest), configfile, HEADER.format(cohort=cohort, variant="demo defaults"))
    workdir = args.workdir_root / cohort
    timings = {}
    if not args.skip_workflow:
        timings["workflow_seconds"] = run_workflow(workdir, configfile, args.mirror, args.cores,
                                                   extra_args=shlex.split(args.snakemake_args))

    tables = [pd.read_csv(workdir / "results" / cohort / "metrics.tsv", sep="\t")]
    output_root = OUT_DIRECTORY / "quality" / cohort / "predictions"
    modalities = kept_modalities(workdir, cohort)
    if "merge" in args.ablations:
        for method in ("sum", "mean"):
            tables.append(score_predictions(workdir, cohort, merge_ablation(workdir, cohort, method, output_root)))
    if "weighted" in args.ablations:
        merge_method = used_config(cohort)["merge"]["method"]
        paths = merge_ablation(workdir, cohort, merge_method, output_root, weighted=True)
        tables.append(score_predictions(workdir, cohort, paths))
    if "selected" in args.ablations:
        merge_method = used_config(cohort)["merge"]["method"]
        paths = merge_ablation(workdir, cohort, merge_method, output_root, selected=True)
        tables.append(score_predictions(workdir, cohort, paths))
    if "leave_one_out" in args.ablations:
        merge_method = used_config(cohort)["merge"]["method"]
        for modality in modalities:
            paths = merge_ablation(workdir, cohort, merge_method, output_root, leave_out=modality)
            tables.append(score_predictions(workdir, cohort, paths))
    weave_paths = {("legofuse_weave", k): output_root / "legofuse_weave" / f"fold_{k}.tsv" for k in fold_ids(workdir, cohort)}
    if "weave" in args.ablations and (args.recompute or not all(path.exists() for path in weave_paths.values())):
        started = time.perf_counter()
        weave_paths = weave_ablation(workdir, cohort, output_root, args.cores)
        timings["weave_seconds"] = time.perf_counter() - started
    if all(path.exists() for path in weave_paths.values()):
        # Predictions of an earlier run are rescored, so a later run with other ablations keeps them.
        tables.append(score_predictions(workdir, cohort, weave_paths))
    no_fft_workdir = args.workdir_root / f"{cohort}_no_fft"
    no_fft_paths = {}
    for target in no_fft_targets(cohort, modalities):
        method, fold = target.split("/")[-2], int(target.rsplit("_", 1)[1].split(".")[0])
        no_fft_paths[(f"{method}_no_fft", fold)] = no_fft_workdir / target
    if "no_fft" in args.ablations:
        no_fft_config = CONFIG_DIRECTORY / f"{cohort}_no_fft.yaml"
        write_config(
            cohort_config(cohort, manifest, frequency_domain=False), no_fft_config,
            HEADER.format(cohort=cohort, variant="demo defaults with blocks.frequency_domain: false"),
        )
        timings["no_fft_workflow_seconds"] = run_workflow(
            no_fft_workdir, no_fft_config, args.mirror, args.cores, no_fft_targets(cohort, modalities),
            extra_args=shlex.split(args.snakemake_args),
        )
    if all(path.exists() for path in no_fft_paths.values()):
        # As for weave: a finished no-FFT run is rescored even when this run does not request it.
        tables.append(score_predictions(workdir, cohort, no_fft_paths))

    metrics = pd.concat(tables, ignore_index=True)
    (OUT_DIRECTORY / "quality").mkdir(parents=True, exist_ok=True)
    metrics.to_csv(OUT_DIRECTORY / "quality" / f"{cohort}.tsv", sep="\t", index=False)
    return {"methods": summarise(metrics), "timings": timings, "modalities": modalities}


HEADER = (
    "Benchmark config for {cohort} ({variant}), written by benchmarks/quality.py.\n"
    "# Run: snakemake -s workflow/Snakefile --directory <fresh dir> --configfile <this file> --cores 2"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohorts", nargs="+", default=COHORT_ORDER, choices=COHORT_ORDER,
                        help="cohorts to run, in this order (default: all four, BRCA last)")
    parser.add_argument("--ablations", nargs="*", default=ABLATIONS, choices=ABLATIONS,
                        help="ablations to run after each cohort's workflow (default: all)")
    parser.add_argument("--workdir-root", type=Path, default=Path("/tmp/bench"),
                        help="parent of the fresh workflow working directories (default: /tmp/bench)")
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("MMLEGO_DATA_MIRROR", DEFAULT_MIRROR)),
                        help="local data mirror with MANIFEST.tsv (default: $MMLEGO_DATA_MIRROR or /work/shared/data)")
    parser.add_argument("--cores", type=int, default=2, help="cores given to snakemake and torch (default: 2)")
    parser.add_argument("--skip-workflow", action="store_true",
                        help="reuse each cohort's finished main workflow run; only run the ablations")
    parser.add_argument("--recompute", action="store_true",
                        help="rerun the weave ablation even where its predictions exist in benchmarks/out/quality")
    parser.add_argument("--snakemake-args", default="",
                        help="extra snakemake options for every workflow run, for example "
                             "'--rerun-triggers mtime --forcerun legofuse' to refit only LegoFuse after a change "
                             "of its settings, keeping blocks whose inputs did not change")
    parser.add_argument("--write-configs", action="store_true", help="write the configs and exit")
    args = parser.parse_args(argv)

    manifest = read_manifest(args.mirror)
    if args.write_configs:
        for cohort in args.cohorts:
            write_config(cohort_config(cohort, manifest), CONFIG_DIRECTORY / f"{cohort}.yaml",
                         HEADER.format(cohort=cohort, variant="demo defaults"))
        return

    summary_path = OUT_DIRECTORY / "quality.json"
    for cohort in args.cohorts:
        print(f"== {cohort}: {time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f}", flush=True)
        load_start = round(os.getloadavg()[0], 2)
        result = run_cohort(cohort, args, manifest)
        # Read the file again just before writing, so runs of other cohorts since the start are kept.
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        # Keep the timings of earlier runs (for example the main workflow before an ablation-only run).
        result["timings"] = {**summary.get(cohort, {}).get("timings", {}), **result["timings"]}
        result["load_average_1min"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
        summary[cohort] = result
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {summary_path}")


if __name__ == "__main__":
    main()
