"""Benchmark the slide stages on the real demo slides: throughput, seconds per stage, peak memory.

Each measurement runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is
that stage's alone. Patch-feature throughput counts slide reading, resizing and
normalisation, not the one-off model set-up (ONNX export, TorchScript tracing). CPU
seconds per patch are reported too, because wall-clock throughput on a shared machine
depends on its load.

    python benchmarks/slides_benchmark.py [--repeats 5] [--threads 2]

Writes a table to stdout and benchmarks/out/slides.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SLIDES = {  # slide file → sheet mpp (None: the file's metadata)
    "CMU-1-Small-Region.svs": None,
    "TCGA-CR-7395-01A-01-TS1.svs": 0.5,
}
BACKENDS = ("onnxruntime", "torchscript", "eager")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child_prepare(slide: str, mpp: float | None, workdir: Path) -> dict:
    """Run inspect, tissue and tiling on one slide; return seconds per stage and peak RSS."""
    from mmlego.slides.inspect import inspect_slide
    from mmlego.slides.tiling import tile_slide, write_coords
    from mmlego.slides.tissue import detect_slide_tissue

    seconds = {}
    started = time.perf_counter()
    info = inspect_slide(slide, slide_id="bench", sheet_mpp=mpp)
    seconds["inspect"] = time.perf_counter() - started
    started = time.perf_counter()
    detect_slide_tissue(slide, info=info, png_path=workdir / "tissue.png",
                        geojson_path=workdir / "tissue.geojson")
    seconds["tissue"] = time.perf_counter() - started
    started = time.perf_counter()
    geojson = json.loads((workdir / "tissue.geojson").read_text())
    coords, fraction, attrs = tile_slide(slide, info=info, geojson=geojson)
    write_coords(workdir / "coords.h5", coords, fraction, attrs)
    seconds["tiling"] = time.perf_counter() - started
    return {"seconds": seconds, "patches": len(coords), "peak_rss_mb": _peak_rss_mb()}


def child_features(slide: str, workdir: Path, backend: str, threads: int) -> dict:
    """Encode all patches once with ``backend``; time reading and the model separately too."""
    import numpy as np
    import torch

    from mmlego.slides.encoders import build_encoder
    from mmlego.slides.features import (FeatureSettings, encode_patches, make_runner, normalise,
                                        read_patches)
    from mmlego.slides.inspect import open_slide
    from mmlego.slides.tiling import read_coords

    coords, tiling = read_coords(workdir / "coords.h5")
    # As in the workflow, onnxruntime reads the export made once by child_export.
    onnx_path = str(workdir / "encoder.onnx") if backend == "onnxruntime" else None
    settings = FeatureSettings(backend=backend, threads=threads, onnx_path=onnx_path)
    encoder = build_encoder(settings.encoder)
    setup_started = time.perf_counter()
    runner, _, _ = make_runner(encoder, settings=settings, input_size=tiling["patch_size"])
    setup_seconds = time.perf_counter() - setup_started

    wall, cpu = time.perf_counter(), time.process_time()
    features = encode_patches(slide, coords, tiling, encoder, runner, input_size=tiling["patch_size"],
                              batch_size=settings.batch_size, slide_id="bench")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    # Profile: reading + resizing alone, then normalisation + model alone on the same patches.
    read_started = time.perf_counter()
    with open_slide(slide) as handle:
        patches = read_patches(handle, slide, coords, level=tiling["level"],
                               read_size_level=tiling["read_size_level"], input_size=tiling["patch_size"])
    read_seconds = time.perf_counter() - read_started
    model_started = time.perf_counter()
    for start in range(0, len(patches), settings.batch_size):
        runner(normalise(patches[start:start + settings.batch_size], encoder.mean, encoder.std))
    model_seconds = time.perf_counter() - model_started

    np.save(workdir / f"features_{backend}.npy", features)
    return {"patches": len(coords), "seconds": wall, "cpu_seconds": cpu, "setup_seconds": setup_seconds,
            "read_seconds": read_seconds, "model_seconds": model_seconds,
            "torch_threads": torch.get_num_threads(), "peak_rss_mb": _peak_rss_mb()}


def child_export(workdir: Path) -> dict:
    """Export the default encoder to ONNX (the workflow's export_encoder job)."""
    from mmlego.slides.encoders import build_encoder
    from mmlego.slides.features import write_onnx

    started = time.perf_counter()
    write_onnx(build_encoder("efficientnet_lite0"), workdir / "encoder.onnx", input_size=256)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}


def run_child(*args: str) -> dict:
    command = [sys.executable, __file__, "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def data_root() -> Path:
    return Path(os.environ.get("MMLEGO_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


def benchmark(repeats: int, threads: int, backends: tuple[str, ...]) -> dict:
    import numpy as np

    results = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}",
               "python": platform.python_version(), "threads": threads, "repeats": repeats,
               "load_average_start": os.getloadavg(), "slides": {}}
    for name, mpp in SLIDES.items():
        slide = data_root() / "wsi" / name
        if not slide.is_file():
            raise SystemExit(f"Slide not found: {slide}. Set MMLEGO_TEST_DATA to the data folder.")
        workdir = Path(tempfile.mkdtemp(prefix="mmlego-bench-"))
        prepare = [run_child("prepare", str(slide), str(mpp), str(workdir)) for _ in range(repeats)]
        export = run_child("export", "-", str(workdir))
        entry = {"patches": prepare[0]["patches"], "onnx_export": export,
                 "prepare_seconds": {stage: statistics.median(run["seconds"][stage] for run in prepare)
                                     for stage in ("inspect", "tissue", "tiling")},
                 "prepare_peak_rss_mb": max(run["peak_rss_mb"] for run in prepare), "backends": {}}
        for backend in backends:
            runs = [run_child("features", str(slide), str(workdir), backend, str(threads))
                    for _ in range(repeats)]
            entry["backends"][backend] = {
                "patches_per_second": statistics.median(run["patches"] / run["seconds"] for run in runs),
                "cpu_seconds_per_patch": statistics.median(run["cpu_seconds"] / run["patches"] for run in runs),
                "setup_seconds": statistics.median(run["setup_seconds"] for run in runs),
                "read_resize_ms_per_patch": statistics.median(1000 * run["read_seconds"] / run["patches"] for run in runs),
                "model_ms_per_patch": statistics.median(1000 * run["model_seconds"] / run["patches"] for run in runs),
                "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            }
        if "eager" in backends:
            eager = np.load(workdir / "features_eager.npy")
            entry["max_abs_difference_vs_eager"] = {
                backend: float(np.abs(np.load(workdir / f"features_{backend}.npy") - eager).max())
                for backend in backends}
            entry["feature_max_abs"] = float(np.abs(eager).max())
        results["slides"][name] = entry
    results["load_average_end"] = os.getloadavg()
    default = [entry["backends"]["onnxruntime"] for entry in results["slides"].values()]
    results["patches_per_second"] = statistics.median(run["patches_per_second"] for run in default)
    # Peak of the default path's jobs: prepare stages, ONNX export and onnxruntime features.
    results["peak_rss_mb"] = max(
        max(entry["prepare_peak_rss_mb"], entry["onnx_export"]["peak_rss_mb"],
            entry["backends"]["onnxruntime"]["peak_rss_mb"])
        for entry in results["slides"].values())
    return results


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}; threads {results['threads']}; median of {results['repeats']} runs; "
          f"load average {results['load_average_start'][0]:.1f} → {results['load_average_end'][0]:.1f}")
    for name, entry in results["slides"].items():
        prepare = entry["prepare_seconds"]
        print(f"\n{name}: {entry['patches']} patches; inspect {prepare['inspect']:.2f} s, tissue "
              f"{prepare['tissue']:.2f} s, tiling {prepare['tiling']:.2f} s, peak {entry['prepare_peak_rss_mb']:.0f} MB; "
              f"ONNX export {entry['onnx_export']['seconds']:.1f} s, peak {entry['onnx_export']['peak_rss_mb']:.0f} MB")
        print("backend       patches/s  CPU s/patch  read ms/patch  model ms/patch  set-up s  peak MB  max |Δ| vs eager")
        for backend, row in entry["backends"].items():
            print(f"{backend:<13} {row['patches_per_second']:9.1f}  {row['cpu_seconds_per_patch']:11.4f}  "
                  f"{row['read_resize_ms_per_patch']:13.1f}  {row['model_ms_per_patch']:14.1f}  "
                  f"{row['setup_seconds']:8.1f}  {row['peak_rss_mb']:7.0f}  "
                  f"{entry.get('max_abs_difference_vs_eager', {}).get(backend, float('nan')):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="backends to measure; onnxruntime is required for the summary keys")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, slide, *rest = args.child
        if kind == "export":
            print(json.dumps(child_export(Path(rest[0]))))
        elif kind == "prepare":
            mpp = None if rest[0] == "None" else float(rest[0])
            print(json.dumps(child_prepare(slide, mpp, Path(rest[1]))))
        else:
            print(json.dumps(child_features(slide, Path(rest[0]), rest[1], int(rest[2]))))
        return
    if "onnxruntime" not in args.backends:
        parser.error("--backends must include onnxruntime, the default backend")
    results = benchmark(args.repeats, args.threads, tuple(args.backends))
    print_table(results)
    out = REPO_ROOT / "benchmarks" / "out" / "slides.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
