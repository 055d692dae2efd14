"""Compress a run's images into a file, and decompress a file with the run that wrote it.

The two functions the commands (``evaluation.compress``, ``evaluation.decompress``) and the benchmark
(``benchmarks.compression``) share. The header (``container``) records everything decoding must repeat or
check: the coder and its options (batch size or lanes are part of the float computation), the model's
identity (``identity``), the data's shape, count, levels and SHA-256, and where it was computed (device
kind, torch threads, package versions). Decoding refuses another model by its identity before any work,
runs on the same device kind with the same thread count by default, and verifies the decoded images
against the SHA-256 at the end: a float mismatch becomes a one-line error, never a wrong image.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.std import tqdm

from core.errors import DGMError
from core.progress import progress_bar as text_bar
from inference.training.load_run import LoadedRun
from evaluation.compression.codecs import CoderOptions, decode, encode
from evaluation.compression.container import CompressedFile, data_checksum, read_file, write_file
from evaluation.compression.identity import model_identity


@dataclass
class CompressionResult:
    """One compressed file: sizes in bytes, the coder's statistics, and timing."""

    header: dict[str, Any]
    file_bytes: int
    payload_bytes: int
    stats: Any
    seconds: float

    @property
    def count(self) -> int:
        return int(self.header["data"]["count"])

    @property
    def header_bytes(self) -> int:
        return self.file_bytes - self.payload_bytes


def device_label(device: torch.device) -> str:
    """"cpu", or "cuda:<GPU name>": the kind of device a file's float computation ran on."""
    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


@contextmanager
def deterministic_kernels() -> Iterator[None]:
    """cuDNN in its deterministic, non-benchmarking mode while coding (a no-op on the CPU)."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def progress_bar(total: int, desc: str) -> tqdm:
    """Images coded so far and images/s, on stderr when it is a terminal (as the trainer's bar)."""
    return text_bar(total=total, desc=desc, unit="img")


def check_images(x: torch.Tensor, levels: int) -> None:
    """Images must hold integer levels 0..levels-1 (levels <= 256: the checksum stores them as uint8)."""
    if levels > 256:
        raise DGMError(f"the compressed format stores up to 256 levels a pixel; this data set has {levels}")
    if x.numel() and (x.min() < 0 or x.max() > levels - 1 or not torch.equal(x, x.round())):
        raise DGMError(f"images to compress must hold integer levels 0..{levels - 1}")


def compress_images(run: LoadedRun, x: torch.Tensor, out: str | Path, options: CoderOptions,
                    source: dict[str, Any], device: torch.device, checkpoint: str = "best") -> CompressionResult:
    """Code images x (N, C, H, W) with ``run``'s model and write the file ``out``.

    ``source`` (split, every, limit) is recorded for people; decoding does not need it."""
    spec = run.model.spec
    if tuple(x.shape[1:]) != tuple(spec.shape):
        raise DGMError(f"images of shape {tuple(x.shape[1:])} do not fit the model's {tuple(spec.shape)}")
    check_images(x, spec.levels)
    model = run.model.to(device).eval()
    start = time.perf_counter()
    with deterministic_kernels(), progress_bar(x.shape[0], "compress") as bar:
        streams, coder, stats = encode(model, run.config["model"], x.to(device), options, bar.update)
    seconds = time.perf_counter() - start
    header = {
        "coder": coder,
        "model": {"name": run.config["model"], "identity": model_identity(run.config, model),
                  "checkpoint": checkpoint, "epoch": run.epoch},
        "data": {"dataset": run.config["dataset"], "shape": list(spec.shape), "count": int(x.shape[0]),
                 "levels": spec.levels, "sha256": data_checksum(x), "source": source},
        "computed_on": {"device": device_label(device), "threads": torch.get_num_threads(),
                        "torch": torch.__version__, "constriction": metadata.version("constriction")},
    }
    size = write_file(out, header, streams)
    payload = 4 * sum(int(s.size) for s in streams)
    return CompressionResult(dict(header, streams=[int(s.size) for s in streams]), size, payload, stats, seconds)


def check_identity(compressed: CompressedFile, run: LoadedRun, name: str) -> None:
    """Refuse a run whose model is not the one that wrote the file (by the identity hash)."""
    wanted = compressed.header.get("model", {})
    have = model_identity(run.config, run.model)
    if wanted.get("identity") != have:
        raise DGMError(f"{name} was written by another model ({wanted.get('name')!r}, identity "
                       f"{str(wanted.get('identity'))[:12]}…, {wanted.get('checkpoint')}.pt of epoch "
                       f"{wanted.get('epoch')}); {run.run_dir} has identity {have[:12]}… "
                       f"({run.config['model']!r}, epoch {run.epoch}): decode with the run that wrote it")


def check_device(compressed: CompressedFile, device: torch.device, name: str) -> None:
    """The float computation must run on the kind of device that encoded (the checksum would catch it later)."""
    wanted = compressed.header.get("computed_on", {}).get("device")
    have = device_label(device)
    if wanted != have:
        hint = "cpu" if wanted == "cpu" else "cuda"
        raise DGMError(f"{name} was encoded on {wanted}, this decoder would run on {have}: the probabilities "
                       f"must be computed on the same kind of device (use --device {hint} on such a machine)")


def decompress_images(compressed: CompressedFile, run: LoadedRun, device: torch.device,
                      name: str = "the file") -> tuple[torch.Tensor, float]:
    """Decode a verified file with ``run``'s model: images (N, C, H, W) on the CPU and the seconds it took.

    Refuses another model (identity), another device kind, data that does not fit the model, and decoded
    images that do not match the file's SHA-256, each with a one-line error."""
    check_identity(compressed, run, name)
    check_device(compressed, device, name)
    data = compressed.header.get("data", {})
    spec = run.model.spec
    if list(data.get("shape", [])) != list(spec.shape) or not isinstance(data.get("count"), int):
        raise DGMError(f"{name} describes images of shape {data.get('shape')}, the model codes {list(spec.shape)}")
    model = run.model.to(device).eval()
    start = time.perf_counter()
    with deterministic_kernels(), progress_bar(data["count"], "decompress") as bar:
        images = decode(model, run.config["model"], compressed.header.get("coder", {}), compressed.streams,
                        data["count"], bar.update)
    seconds = time.perf_counter() - start
    if data_checksum(images) != data.get("sha256"):
        computed = compressed.header.get("computed_on", {})
        raise DGMError(f"the decoded images do not match {name}'s SHA-256: the probabilities were not recomputed "
                       f"bit for bit (encoded with torch {computed.get('torch')} on {computed.get('device')} with "
                       f"{computed.get('threads')} threads; decoded with torch {torch.__version__} on "
                       f"{device_label(device)} with {torch.get_num_threads()})")
    return images, seconds



def split_images(run: LoadedRun, split: str, every: int = 1, limit: int | None = None) -> torch.Tensor:
    """``split[::every][:limit]`` of the run's data set, as ``evaluation.evaluate`` selects examples."""
    if every < 1:
        raise DGMError(f"--every must be at least 1, got {every}")
    if limit is not None and limit < 1:
        raise DGMError(f"--limit must be at least 1, got {limit}")
    x = run.dataset.split(split)[::every][:limit]
    if x.shape[0] == 0:
        raise DGMError(f"the {split} split of {run.config['dataset']} is empty: nothing to compress")
    return x


def round_trip(run: LoadedRun, x: torch.Tensor, path: str | Path, options: CoderOptions, source: dict[str, Any],
               device: torch.device) -> tuple[CompressionResult, float]:
    """Compress x into ``path``, read the file back and decode it: (the result, seconds of decoding).

    The decoded images are verified by the file's SHA-256 and compared with x once more; any difference is
    a one-line error."""
    result = compress_images(run, x, path, options, source, device)
    decoded, seconds = decompress_images(read_file(path), run, device, str(path))
    if not torch.equal(decoded, x.detach().to("cpu", decoded.dtype)):
        raise DGMError(f"{path} did not decode to its images")
    return result, seconds
