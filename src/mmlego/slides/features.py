"""Patch features: read the tiled patches in batches from OpenSlide and encode them.

Backends (``FeatureSettings.backend``):

- ``onnxruntime`` (default on CPU): the encoder is exported to ONNX (once, to a file given
  as ``onnx_path``, or in memory) and run by ONNX Runtime, which fuses convolution and
  batch norm. On a 2-core AMD EPYC it used about a third of eager torch's CPU time per
  patch (docs/benchmarks.md). Its features match eager torch to about 1e-5 absolute.
- ``torchscript``: traced, frozen and optimised for inference by torch.jit.
- ``eager``: the plain torch module, in channels-last memory format.

On a CUDA device the torch backends run there; ``onnxruntime`` then falls back to
``eager``, because the onnxruntime wheel used here is CPU-only.
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mmlego.devices import pick_device
from mmlego.atomic import atomic_path
from mmlego.slides.encoders import PatchEncoder, build_encoder
from mmlego.slides.inspect import open_slide, read_region_checked
from mmlego.slides.tiling import read_coords, write_coords_dataset

logger = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "torchscript", "eager")


@dataclass(frozen=True)
class FeatureSettings:
    """Patch feature extraction parameters."""

    encoder: str = "efficientnet_lite0"
    checkpoint: str | None = None  # None: the encoder's shipped weights
    batch_size: int = 16
    backend: str = "onnxruntime"
    device: str = "auto"  # "auto" picks CUDA when available
    threads: int = 1
    onnx_path: str | None = None  # ONNX export from write_onnx; None exports in memory

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}.")


# -- reading -----------------------------------------------------------------------------


def _rgba_to_rgb(region: Image.Image) -> np.ndarray:
    """Drop alpha, showing transparent (unscanned) pixels as white."""
    if region.getextrema()[3][0] == 255:  # Fully opaque regions, the usual case, need no blending.
        return np.asarray(region.convert("RGB"))
    rgba = np.asarray(region)
    weight = rgba[..., 3:].astype(np.float32) / 255.0
    return (rgba[..., :3] * weight + 255.0 * (1.0 - weight)).round().astype(np.uint8)


def read_patches(slide, path, coords: np.ndarray, *, level: int, read_size_level: int,
                 input_size: int) -> np.ndarray:
    """Read patches at level-0 ``coords`` (B, 2) from ``level`` and resize them: (B, S, S, 3) uint8."""
    batch = np.empty((len(coords), input_size, input_size, 3), dtype=np.uint8)
    for index, (x, y) in enumerate(coords.tolist()):
        region = read_region_checked(slide, path, (x, y), level, (read_size_level, read_size_level))
        if read_size_level != input_size:
            region = region.resize((input_size, input_size), Image.Resampling.BILINEAR)
        batch[index] = _rgba_to_rgb(region)
    return batch


def normalise(batch: np.ndarray, mean, std) -> np.ndarray:
    """Convert (B, S, S, 3) uint8 to (B, 3, S, S) float32, scaled to [0, 1] and standardised per channel.

    A channel has only 256 values, so ``(value / 255 - mean) / std`` is computed once per
    value in float32 and looked up, which takes one pass over the batch instead of four.
    """
    scale = np.float32(1.0 / 255.0)
    levels = np.arange(256, dtype=np.float32) * scale
    mean = np.asarray(mean, dtype=np.float32).reshape(3, 1)
    std = np.asarray(std, dtype=np.float32).reshape(3, 1)
    table = (levels[None, :] - mean) / std  # (3, 256)
    images = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], batch[..., channel], out=images[:, channel])
    return images


# -- runners -----------------------------------------------------------------------------


class TorchRunner:
    """Run a torch encoder eagerly or as frozen TorchScript, in inference mode and channels-last."""

    def __init__(self, model: torch.nn.Module, *, device: torch.device, scripted: bool,
                 input_size: int) -> None:
        self.device = device
        model = model.to(device).eval().to(memory_format=torch.channels_last)
        if scripted:
            example = torch.zeros(2, 3, input_size, input_size, device=device)
            example = example.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
        self.model = model

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.from_numpy(images).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(batch).float().cpu().numpy()


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("The onnxruntime backend needs the packages onnx and onnxruntime; install "
                          "them or set slides.features.backend to torchscript or eager.") from error
    return onnxruntime


def export_onnx(encoder: PatchEncoder, *, input_size: int) -> bytes:
    """Export ``encoder`` to ONNX with a dynamic batch axis; return the serialised model.

    The model's metadata records the encoder name, its weights' sha256 and the input size,
    which ``OnnxRunner`` checks, so a stale export is never used with other weights.
    """
    import onnx

    buffer = io.BytesIO()
    example = torch.zeros(2, 3, input_size, input_size)
    # NOTE: the TorchScript-based exporter (dynamo=False) is deprecated since torch 2.9;
    # the newer exporter needs the onnxscript package, which this project does not install.
    torch.onnx.export(encoder.model.eval(), (example,), buffer, input_names=["images"],
                      output_names=["features"], opset_version=17, dynamo=False,
                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, _onnx_metadata(encoder, input_size))
    return model.SerializeToString()


def _onnx_metadata(encoder: PatchEncoder, input_size: int) -> dict[str, str]:
    return {"encoder": encoder.name, "encoder_weights_sha256": encoder.weights_sha256,
            "input_size": str(input_size)}


def write_onnx(encoder: PatchEncoder, path: str | Path, *, input_size: int) -> None:
    """Export ``encoder`` to an ONNX file, atomically, for ``FeatureSettings.onnx_path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(export_onnx(encoder, input_size=input_size))


class OnnxRunner:
    """Run an ONNX export of a patch encoder with ONNX Runtime on the CPU."""

    def __init__(self, model: bytes, *, threads: int, expected_metadata: dict[str, str],
                 source: str = "in-memory export") -> None:
        onnxruntime = _import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning, which costs little on a free machine and
        # avoids stealing cores from other jobs on a shared one.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        found = self.session.get_modelmeta().custom_metadata_map
        mismatched = {key: (found.get(key), value) for key, value in expected_metadata.items()
                      if found.get(key) != value}
        if mismatched:
            raise ValueError(f"ONNX model {source} does not match the encoder: (found, expected) "
                             f"{mismatched}. Delete it so it is exported again.")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": images})[0]


def make_runner(encoder: PatchEncoder, *, settings: FeatureSettings, input_size: int):
    """Build the runner for ``settings.backend`` on the resolved device; return ``(runner, backend, device)``.

    With the onnxruntime backend the model is read from ``settings.onnx_path`` when set (see
    ``write_onnx``), else exported in memory, which costs a few seconds and a few hundred MB.
    """
    device = pick_device(settings.device)
    torch.set_num_threads(max(1, settings.threads))
    backend = settings.backend
    if backend == "onnxruntime" and device.type != "cpu":
        logger.info("Backend onnxruntime runs on the CPU only; using eager torch on %s", device)
        backend = "eager"
    if backend == "onnxruntime":
        expected = _onnx_metadata(encoder, input_size)
        if settings.onnx_path is not None:
            model, source = Path(settings.onnx_path).read_bytes(), str(settings.onnx_path)
        else:
            model, source = export_onnx(encoder, input_size=input_size), "in-memory export"
        runner = OnnxRunner(model, threads=max(1, settings.threads), expected_metadata=expected,
                            source=source)
        return runner, backend, device
    runner = TorchRunner(encoder.model, device=device, scripted=backend == "torchscript",
                         input_size=input_size)
    return runner, backend, device


# -- public ------------------------------------------------------------------------------


def _batches(coords: np.ndarray, batch_size: int):
    for start in range(0, len(coords), batch_size):
        yield coords[start:start + batch_size]


def encode_patches(slide_path, coords: np.ndarray, tiling: dict, encoder: PatchEncoder, runner, *,
                   input_size: int, batch_size: int, slide_id: str, out=None):
    """Encode the patches at ``coords`` batch by batch into ``out``, (N, D) float32; return ``out``.

    ``out`` may be an HDF5 dataset, so features go to disk as they are made; None
    allocates an array. One background thread reads the next batch from OpenSlide while
    the current one is encoded, so at most two batches of patches are in memory.
    """
    features = np.empty((len(coords), encoder.feature_dim), dtype=np.float32) if out is None else out

    def read(batch_coords):
        return read_patches(slide, slide_path, batch_coords, level=tiling["level"],
                            read_size_level=tiling["read_size_level"], input_size=input_size)

    with open_slide(slide_path) as slide, ThreadPoolExecutor(max_workers=1) as reader, \
            tqdm(total=len(coords), unit="patch", desc=slide_id, mininterval=5) as progress:
        batches = list(_batches(coords, batch_size))
        pending = reader.submit(read, batches[0]) if batches else None
        start = 0
        for index in range(len(batches)):
            patches = pending.result()
            if index + 1 < len(batches):
                pending = reader.submit(read, batches[index + 1])
            output = runner(normalise(patches, encoder.mean, encoder.std))
            features[start:start + len(patches)] = output
            start += len(patches)
            progress.update(len(patches))
    return features


def extract_slide_features(slide_path: str | Path, coords_path: str | Path, output_path: str | Path, *,
                           slide_id: str, settings: FeatureSettings = FeatureSettings()) -> dict:
    """Encode every patch of ``coords.h5`` and write the features file; return a summary.

    The output contains ``features`` (N, D) float32 and ``coords`` (N, 2) int64 level-0 (x, y),
    with attributes naming the encoder, its weights' sha256, the input size, the backend and
    the tiling frames. A slide with no patches gives (0, D) and (0, 2) datasets and a warning.
    """
    coords, tiling = read_coords(coords_path)
    encoder = build_encoder(settings.encoder, settings.checkpoint)
    input_size = encoder.input_size or tiling["patch_size"]
    attrs = {**tiling, "slide_id": slide_id, "encoder": encoder.name,
             "encoder_weights_sha256": encoder.weights_sha256,
             "encoder_weights_file": encoder.weights_path.name, "input_size": int(input_size),
             "feature_dim": int(encoder.feature_dim), "normalisation_mean": list(encoder.mean),
             "normalisation_std": list(encoder.std), "backend": "none", "device": "none"}
    if len(coords) == 0:
        logger.warning("Slide %s has no patches; writing empty features", slide_id)
        write_features(output_path, np.zeros((0, encoder.feature_dim), np.float32), coords, attrs)
        return {"patches": 0, "seconds": 0.0, "backend": "none"}

    runner, backend, device = make_runner(encoder, settings=settings, input_size=input_size)
    attrs.update(backend=backend, device=str(device))
    logger.info("Slide %s: feature extraction started (%d patches, encoder %s, backend %s, device %s)",
                slide_id, len(coords), encoder.name, backend, device)
    started = time.perf_counter()
    with atomic_path(output_path) as tmp, h5py.File(tmp, "w") as handle:
        write_coords_dataset(handle, coords, attrs)
        features = handle.create_dataset("features", shape=(len(coords), encoder.feature_dim),
                                         dtype=np.float32)
        encode_patches(slide_path, coords, tiling, encoder, runner, input_size=input_size,
                       batch_size=settings.batch_size, slide_id=slide_id, out=features)
    elapsed = time.perf_counter() - started
    logger.info("Slide %s: feature extraction finished in %.1f s (%.1f patches/s)",
                slide_id, elapsed, len(coords) / elapsed)
    return {"patches": len(coords), "seconds": elapsed, "backend": backend}


def write_features(path: str | Path, features: np.ndarray, coords: np.ndarray, attrs: dict) -> None:
    """Write ``features`` (N, D) float32 and ``coords`` (N, 2) int64 with ``attrs``, atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        write_coords_dataset(handle, coords, attrs)
        handle.create_dataset("features", data=np.asarray(features, dtype=np.float32))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-features SLIDE --coords coords.h5 --output features.h5``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-features", description=main.__doc__)
    parser.add_argument("slide", help="slide file readable by OpenSlide")
    parser.add_argument("--coords", required=True, help="coords.h5 from slides-tile")
    parser.add_argument("--output", required=True, help="features .h5 to write")
    parser.add_argument("--slide-id", required=True, help="slide name recorded in the output")
    defaults = FeatureSettings()
    parser.add_argument("--encoder", default=defaults.encoder,
                        help="efficientnet_lite0 or timm:<architecture> (default %(default)s)")
    parser.add_argument("--checkpoint", default=None, help="local weights file; default: shipped weights")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="patches per batch")
    parser.add_argument("--backend", choices=BACKENDS, default=defaults.backend, help="inference backend")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="CPU threads for inference")
    parser.add_argument("--onnx-path", default=None,
                        help="ONNX export of the encoder (from slides-export-onnx); default: export in memory")
    args = parser.parse_args(argv)
    settings = FeatureSettings(**{key: getattr(args, key) for key in asdict(defaults)})
    extract_slide_features(args.slide, args.coords, args.output, slide_id=args.slide_id, settings=settings)


def export_main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``mmlego slides-export-onnx --output encoder.onnx [--encoder ...]``."""
    parser = argparse.ArgumentParser(prog="mmlego slides-export-onnx", description=export_main.__doc__)
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--encoder", default=FeatureSettings.encoder, help="encoder name (default %(default)s)")
    parser.add_argument("--checkpoint", default=None, help="local weights file; default: shipped weights")
    parser.add_argument("--input-size", type=int, default=256,
                        help="patch side in pixels fed to the encoder (the tiling patch_size)")
    args = parser.parse_args(argv)
    encoder = build_encoder(args.encoder, args.checkpoint)
    write_onnx(encoder, args.output, input_size=encoder.input_size or args.input_size)
