"""Time ``snakemake -n`` (dry run) on a slide sheet of many slides.

The script writes a slide sheet of ``--slides`` rows under ``--workdir`` (default
/tmp/bench/dag), with one empty placeholder file per slide: the dry run checks that each
slide file exists but never opens it. The config is the demo config with no cohorts, no
data files and ``slides.sheet`` pointing at the generated sheet, so the DAG holds only the
slide stages (prepare_slide and extract_features per slide, plus the one encoder export).
The median wall time of ``--repeats`` dry runs goes to benchmarks/out/dag.json;
benchmarks/collect.py merges the 10,000-slide figure into benchmarks/results.json as
``dag.dry_run_seconds_10k_slides``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
SNAKEFILE = REPOSITORY / "workflow" / "Snakefile"
DEMO_CONFIG = REPOSITORY / "config" / "config.yaml"
OUT_PATH = REPOSITORY / "benchmarks" / "out" / "dag.json"


def write_inputs(workdir: Path, slides: int) -> Path:
    """Write the sheet, the placeholder slides and the config; return the config path."""
    placeholders = workdir / "placeholder_slides"
    placeholders.mkdir(parents=True, exist_ok=True)
    sheet = workdir / f"slides_{slides}.tsv"
    with open(sheet, "w") as handle:
        handle.write("slide_id\tcase_id\tpath\tmpp\n")
        for index in range(slides):
            slide_id = f"SLIDE-{index:06d}"
            path = placeholders / f"{slide_id}.svs"
            path.touch()
            # Three slides per patient, as in cohorts with several diagnostic slides per case.
            handle.write(f"{slide_id}\tCASE-{index // 3:06d}\t{path}\t0.5\n")

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["data"]["files"] = []
    config["cohorts"] = {}
    config["slides"]["sheet"] = str(sheet)
    configfile = workdir / f"config_{slides}.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    return configfile


def dry_run(workdir: Path, configfile: Path, snakefile: Path = SNAKEFILE) -> tuple[float, int | None]:
    """Run one dry run and return its wall seconds and the job count snakemake reports."""
    command = [
        sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
        "--configfile", str(configfile), "--cores", "1", "-n",
    ]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"dry run failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    match = re.search(r"^total\s+(\d+)", completed.stdout + completed.stderr, flags=re.MULTILINE)
    return seconds, int(match.group(1)) if match else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, nargs="+", default=[1000, 10000],
                        help="sheet sizes to time (default: 1000 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="dry runs per size; the median is kept (default: 3)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench/dag"),
                        help="working directory for the sheet, placeholders and .snakemake (default: /tmp/bench/dag)")
    parser.add_argument("--snakefile", type=Path, default=SNAKEFILE,
                        help=f"Snakefile to time, for example a patched copy (default: {SNAKEFILE})")
    parser.add_argument("--output", type=Path, default=OUT_PATH, help=f"JSON output (default: {OUT_PATH})")
    args = parser.parse_args(argv)

    if (args.workdir / "config").exists():
        raise RuntimeError(f"{args.workdir}/config exists; the Snakefile would merge it into the benchmark config")
    results = {}
    for slides in args.slides:
        configfile = write_inputs(args.workdir, slides)
        load_before = os.getloadavg()[0]
        runs = [dry_run(args.workdir, configfile, args.snakefile) for _ in range(args.repeats)]
        seconds = [run[0] for run in runs]
        results[str(slides)] = {
            "seconds": statistics.median(seconds), "seconds_all": seconds, "jobs": runs[0][1],
            "load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2),
        }
        print(json.dumps({"slides": slides, **results[str(slides)]}), flush=True)
    shutil.rmtree(args.workdir / ".snakemake", ignore_errors=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"snakefile": str(args.snakefile), "repeats": args.repeats, "slides": results}
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
