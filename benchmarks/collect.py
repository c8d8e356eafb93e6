"""Merge the benchmark outputs under benchmarks/out/ into benchmarks/results.json.

Sources, each optional (a missing one leaves its keys null or absent):

* out/quality.json (quality.py): ``quality.<cohort>.<method>.c_index_mean`` / ``_sd`` and
  ``c_index_ipcw_mean`` / ``_sd``, with run timings under ``quality_runs``;
* out/cost.json (cost.py): ``cost.<cohort>``;
* out/merge_scaling.json (merge_scaling.py): ``merge_scaling.<count>.seconds`` / ``.peak_mb``;
* out/dag.json (dag_dry_run.py): ``dag.dry_run_seconds_10k_slides``, and out/dag_patched.json,
  a run on a patched workflow copy, under ``dag.patched_trial``;
* out/slides.json (slides_benchmark.py): ``slides.patches_per_second`` / ``.peak_rss_mb``;
* out/demo.json: ``demo.wall_seconds``.

It also records the date, the machine (cores, memory, CPU model from /proc/cpuinfo) and
the commit (``git rev-parse HEAD``; uncommitted changes are not captured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
OUT = BENCHMARKS / "out"
RESULTS_PATH = BENCHMARKS / "results.json"


def _read(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> dict:
    """Describe this machine: logical CPUs, total memory and the CPU model name."""
    model = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = None
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1) if memory_kb else None,
        "cpu_model": model,
        "load_average_1min_at_collect": round(os.getloadavg()[0], 2),
    }


def commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=BENCHMARKS, check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def collect() -> dict:
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
    }

    quality = _read("quality.json") or {}
    results["quality"] = {cohort: entry["methods"] for cohort, entry in quality.items()}
    results["quality_runs"] = {
        cohort: {key: value for key, value in entry.items() if key != "methods"} for cohort, entry in quality.items()
    }

    results["cost"] = _read("cost.json") or {}

    scaling = _read("merge_scaling.json")
    results["merge_scaling"] = {}
    if scaling:
        settings = {key: value for key, value in scaling.items() if key != "counts"}
        results["merge_scaling"] = {count: entry for count, entry in scaling["counts"].items()}
        results["merge_scaling"]["settings"] = settings

    dag = _read("dag.json")
    ten_thousand = (dag or {}).get("slides", {}).get("10000")
    results["dag"] = {
        "dry_run_seconds_10k_slides": ten_thousand["seconds"] if ten_thousand else None,
        "runs": dag,
        # Optional trial of a patched workflow copy (dag_dry_run.py --snakefile ... --output out/dag_patched.json).
        "patched_trial": _read("dag_patched.json"),
    }

    slides = _read("slides.json") or {}
    results["slides"] = {
        "patches_per_second": slides.get("patches_per_second"),
        "peak_rss_mb": slides.get("peak_rss_mb"),
    }
    demo = _read("demo.json") or {}
    results["demo"] = {"wall_seconds": demo.get("wall_seconds")}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help=f"JSON output (default: {RESULTS_PATH})")
    args = parser.parse_args(argv)
    results = collect()
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    tables = OUT / "tables.md"
    tables.parent.mkdir(parents=True, exist_ok=True)
    tables.write_text(markdown_tables(results) + "\n")
    print(f"wrote {tables}")



def markdown_tables(results: dict) -> str:
    """Render the quality, cost and merge-scaling figures as Markdown tables for the docs."""
    lines = []
    for cohort, methods in results["quality"].items():
        lines += [f"### {cohort}", "", "| method | Harrell's C | Uno's C | folds |", "|---|---|---|---|"]
        for method, entry in methods.items():
            lines.append(
                f"| {method} | {entry['c_index_mean']:.3f} ± {entry['c_index_sd']:.3f} "
                f"| {entry['c_index_ipcw_mean']:.3f} ± {entry['c_index_ipcw_sd']:.3f} | {entry['n_folds']} |"
            )
        lines.append("")
    for cohort, cost in results["cost"].items():
        lines += [f"### cost {cohort}", "", "| step | seconds (in-process) | gradient steps | job seconds | job peak RSS MB |",
                  "|---|---|---|---|---|"]
        blocks = cost["blocks"]
        lines.append(
            f"| unimodal blocks ({len(cost['modalities'])}) | {blocks['seconds']['mean']:.1f} ± {blocks['seconds']['sd']:.1f} "
            f"| {blocks['gradient_steps']['mean']:.0f} | | |"
        )
        for method, entry in cost["methods"].items():
            job = entry["job_seconds"]
            job_text = f"{job['mean']:.1f}" if job else ""
            steps = entry["gradient_steps"]["mean"]
            steps_text = "n/a" if steps is None else f"{steps:.0f}"
            lines.append(
                f"| {method} | {entry['seconds']['mean']:.2f} ± {entry['seconds']['sd']:.2f} "
                f"| {steps_text} | {job_text} | {entry['job_max_rss_mb'] or ''} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
