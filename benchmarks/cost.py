"""Wall time and gradient steps to a multimodal model, from a finished workflow run.

Reads the prediction records (results/<cohort>/predictions/<method>/fold_<k>.json:
``seconds`` and ``gradient_steps``) and the block training summaries
(results/<cohort>/blocks/<modality>/fold_<k>.training.json) of a workflow working
directory, plus snakemake's per-job benchmark files (logs/benchmarks/..., wall seconds and
peak RSS of the whole job, start-up and data loading included) where the rule writes one.

LegoMerge's own cost is its merge: the record's seconds and zero gradient steps. The
unimodal blocks it merges are reported separately, because late fusion needs the same
blocks. LegoFuse's cost is its fine-tuning on top of those blocks. Early fusion trains one
network from scratch. Results go to benchmarks/out/cost.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

OUT_PATH = Path(__file__).resolve().parent / "out" / "cost.json"
METHODS = ("legomerge", "legofuse", "early_fusion", "late_fusion", "coxnet")


def _mean_sd(values: list[float]) -> dict:
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "sd": sd, "n": len(values)}


def _job_benchmark(path: Path) -> dict | None:
    """Read a snakemake benchmark TSV: wall seconds (s) and peak RSS (max_rss, MB)."""
    if not path.exists():
        return None
    with open(path, newline="") as handle:
        row = next(csv.DictReader(handle, delimiter="\t"))
    return {"seconds": float(row["s"]), "max_rss_mb": float(row["max_rss"]) if row["max_rss"] not in ("", "-") else None}


def cohort_cost(workdir: Path, cohort: str) -> dict:
    """Summarise the cost of every method and of the unimodal blocks over the folds."""
    results = workdir / "results" / cohort
    modalities = json.loads((results / "modalities.json").read_text())["modalities"]
    folds = sorted(int(p.stem.split("_")[1]) for p in (results / "splits").glob("fold_*.json"))
    cost: dict = {"modalities": modalities, "folds": folds, "methods": {}}

    for method in METHODS:
        records = [json.loads((results / "predictions" / method / f"fold_{k}.json").read_text()) for k in folds]
        jobs = [_job_benchmark(workdir / "logs" / "benchmarks" / cohort / method / f"fold_{k}.tsv") for k in folds]
        jobs = [job for job in jobs if job]
        cost["methods"][method] = {
            "seconds": _mean_sd([r["seconds"] for r in records]),
            "gradient_steps": _mean_sd([r["gradient_steps"] for r in records]),
            "job_seconds": _mean_sd([job["seconds"] for job in jobs]) if jobs else None,
            "job_max_rss_mb": max((job["max_rss_mb"] or 0) for job in jobs) if jobs else None,
        }

    per_fold_seconds, per_fold_steps, per_modality = [], [], {}
    for k in folds:
        summaries = {m: json.loads((results / "blocks" / m / f"fold_{k}.training.json").read_text()) for m in modalities}
        per_fold_seconds.append(sum(s["seconds"] for s in summaries.values()))
        per_fold_steps.append(sum(s["gradient_steps"] for s in summaries.values()))
        for m, summary in summaries.items():
            per_modality.setdefault(m, {"seconds": [], "gradient_steps": [], "best_epoch": []})
            per_modality[m]["seconds"].append(summary["seconds"])
            per_modality[m]["gradient_steps"].append(summary["gradient_steps"])
            per_modality[m]["best_epoch"].append(summary["best_epoch"])
    cost["blocks"] = {
        "seconds": _mean_sd(per_fold_seconds),
        "gradient_steps": _mean_sd(per_fold_steps),
        "per_modality": {m: {key: _mean_sd(values) for key, values in v.items()} for m, v in per_modality.items()},
    }
    return cost


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohorts", nargs="+", default=["tcga_blca"], help="cohorts to report (default: tcga_blca)")
    parser.add_argument("--workdir-root", type=Path, default=Path("/tmp/bench"),
                        help="parent of the workflow working directories written by quality.py (default: /tmp/bench)")
    parser.add_argument("--output", type=Path, default=OUT_PATH, help=f"JSON output (default: {OUT_PATH})")
    args = parser.parse_args(argv)

    report = {}
    for cohort in args.cohorts:
        workdir = args.workdir_root / cohort
        if not (workdir / "results" / cohort / "metrics.tsv").exists():
            print(f"skipped {cohort}: no finished workflow run in {workdir}")
            continue
        report[cohort] = cohort_cost(workdir, cohort)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
