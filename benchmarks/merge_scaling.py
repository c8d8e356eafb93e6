"""Time and peak memory of the LegoMerge merge for 2, 4 and 8 modalities on synthetic latents.

Each modality count runs in a fresh subprocess. It builds random complex64 latents
(patients × n_latents × latent_dim per modality) and one random survival head per
modality, then resets the peak resident set size (Linux /proc/self/clear_refs) and runs
``merge_latents`` (harmonic) plus ``merge_heads`` (slerp) ``--repeats`` times. Reported
per count: the median wall and CPU seconds of the repeats (CPU time is less sensitive to
other jobs on a shared machine), and the peak resident memory of the first full merge
above the resident memory just before it (MB = 2**20 bytes).
Results go to benchmarks/out/merge_scaling.json; benchmarks/collect.py merges them into
benchmarks/results.json under ``merge_scaling.<count>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT_PATH = Path(__file__).resolve().parent / "out" / "merge_scaling.json"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not found in /proc/self/status")


def measure(count: int, patients: int, n_latents: int, latent_dim: int, n_bins: int, repeats: int) -> dict:
    """Measure one modality count in this process; return its seconds and peak memory."""
    import torch
    from torch import nn

    from mmlego.nn.merge import merge_heads, merge_latents

    generator = torch.Generator().manual_seed(count)
    shape = (patients, count, n_latents, latent_dim)
    latents = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
    presence = torch.ones((patients, count), dtype=torch.bool)
    heads = [nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, n_bins)) for _ in range(count)]

    # Warm-up on one patient so one-off allocations (kernels, thread pools) are not counted.
    with torch.inference_mode():
        merge_latents(latents[:1], presence[:1], method="harmonic")
        merge_heads(heads, method="slerp")

    # Peak memory of the first full merge. Later repeats reuse memory the allocator keeps,
    # so their resident-set growth would understate what one merge needs.
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
    rss_before_kb = _status_kb("VmRSS")
    with torch.inference_mode():
        merged = merge_latents(latents, presence, method="harmonic")
        merge_heads(heads, method="slerp")
    peak_kb = _status_kb("VmHWM")
    del merged

    latent_seconds, head_seconds, cpu_seconds = [], [], []
    for _ in range(repeats):
        with torch.inference_mode():
            cpu_started = time.process_time()
            started = time.perf_counter()
            merged = merge_latents(latents, presence, method="harmonic")
            latent_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            merge_heads(heads, method="slerp")
            head_seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu_started)
        del merged
    total = [latent + head for latent, head in zip(latent_seconds, head_seconds)]
    return {
        "modalities": count,
        "seconds": statistics.median(total),
        "latent_merge_seconds": statistics.median(latent_seconds),
        "head_merge_seconds": statistics.median(head_seconds),
        "cpu_seconds": statistics.median(cpu_seconds),
        "seconds_min": min(total),
        "seconds_max": max(total),
        "peak_mb": (peak_kb - rss_before_kb) / 1024,
        "input_mb": latents.numel() * latents.element_size() / 2**20,
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8], help="modality counts (default: 2 4 8)")
    parser.add_argument("--patients", type=int, default=1000, help="patients per merge (default: 1000)")
    parser.add_argument("--n-latents", type=int, default=16, help="latent array rows (default: 16)")
    parser.add_argument("--latent-dim", type=int, default=32, help="latent array width (default: 32)")
    parser.add_argument("--n-bins", type=int, default=4, help="survival bins, the heads' outputs (default: 4)")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per count; the median is kept (default: 21)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--output", type=Path, default=OUT_PATH, help=f"JSON output (default: {OUT_PATH})")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        import torch

        torch.set_num_threads(args.threads)
        result = measure(args.child, args.patients, args.n_latents, args.latent_dim, args.n_bins, args.repeats)
        print(json.dumps(result))
        return

    results = {}
    for count in args.counts:
        command = [
            sys.executable, __file__, "--child", str(count), "--patients", str(args.patients),
            "--n-latents", str(args.n_latents), "--latent-dim", str(args.latent_dim), "--n-bins", str(args.n_bins),
            "--repeats", str(args.repeats), "--threads", str(args.threads),
        ]
        load_before = os.getloadavg()[0]
        # A fixed glibc mmap threshold makes every large tensor its own mapping, returned to
        # the system when freed, so freed inputs cannot hide the merge's own allocations.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        results[str(count)] = {**json.loads(output.strip().splitlines()[-1]), "load_average_1min": round(load_before, 2)}
        print(json.dumps(results[str(count)]), flush=True)

    payload = {
        "patients": args.patients, "n_latents": args.n_latents, "latent_dim": args.latent_dim,
        "threads": args.threads, "counts": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
