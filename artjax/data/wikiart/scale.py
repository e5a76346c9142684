"""Preparing WikiArt at scale, measured (`python -m artjax.bench wikiart_prepare`): a generated
Painter by Numbers download of N paintings at P pixels each, prepared by the WikiArt builder, with
its rate and the peak memory of the whole process tree; and the near-duplicate grouping, the one
step that grows faster than the paintings, timed alone at full size on random signatures.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pathlib
import threading
import time

import numpy as np
from PIL import Image

ASPECT = 4 / 3  # width / height of a generated painting


def painting_jpeg(seed: int, pixels: int) -> bytes:
    """A painting-like JPEG of about `pixels` pixels: smooth colour fields with brush-scale noise,
    so it compresses (and decodes) like a photographed painting, not like white noise."""
    rng = np.random.default_rng(seed)
    height = int(round((pixels / ASPECT) ** 0.5))
    width = int(round(height * ASPECT))
    fields = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    smooth = np.asarray(fields.resize((width, height), Image.Resampling.BICUBIC), np.int16)
    # about 0.3 bytes per pixel at quality 90, as WikiArt's scans
    grain = rng.normal(0, 10, (height // 2 + 1, width // 2 + 1, 1)).astype(np.int16)
    grain = np.repeat(np.repeat(grain, 2, 0), 2, 1)[:height, :width]
    buf = io.BytesIO()
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write_painting(args) -> int:
    path, seed, pixels = args
    raw = painting_jpeg(seed, pixels)
    pathlib.Path(path).write_bytes(raw)
    return len(raw)


def generate(root, images: int, pixels: int, workers: int = 0) -> int:
    """Writes a Painter by Numbers layout of `images` paintings (27 styles, 300 artists, every
    tenth in test/) under `root`; returns the bytes of images written."""
    from artjax.data.wikiart import names

    root = pathlib.Path(root)
    if (root / "all_data_info.csv").is_file():  # generated before (--output): reused
        return sum(p.stat().st_size for p in root.rglob("*.jpg"))
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(exist_ok=True)
    lines = ["artist,date,genre,pixelsx,pixelsy,size_bytes,source,style,title,artist_group,"
             "in_train,new_filename"]  # fmt: skip
    jobs = []
    for i in range(images):
        in_train = i % 10 != 0
        name = f"{i}.jpg"
        style = names.STYLES[i % len(names.STYLES)]
        lines.append(
            f'artist {i % 300},{1800 + i % 200},portrait,0,0,0,wikiart,"{style}",t,train_only,'
            f"{in_train},{name}"
        )
        jobs.append((root / ("train" if in_train else "test") / name, i, pixels))
    (root / "all_data_info.csv").write_text("\n".join(lines) + "\n")
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers or os.cpu_count()) as pool:
        return sum(pool.imap_unordered(_write_painting, jobs, chunksize=4))


class TreeUsage:
    """Peak resident memory of this process and all its descendants together (sampled; shared
    pages counted once per process, so an upper bound), and the CPU seconds they used (each
    process's last sample: a process that ends loses at most `every_s` of it)."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def _sample(self):
        import psutil

        me = psutil.Process()
        start = sum(me.cpu_times()[:2])
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                    self._cpu[p.pid] = sum(p.cpu_times()[:2]) - (start if p is me else 0.0)
                except psutil.Error:
                    pass  # ended between listing and reading
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure_prepare(root, prepared_dir, workers: int = 0) -> dict:
    """Prepares the download at `root` from scratch; its time, rate and peak memory."""
    from artjax.data.wikiart import builder

    start = time.perf_counter()
    with TreeUsage() as usage:
        prepared = builder.prepare(root, prepared_dir, "painter_by_numbers", workers=workers)
    seconds = time.perf_counter() - start
    count = sum(s.num_examples for s in prepared.info.splits.values())
    return dict(
        images=count,
        seconds=seconds,
        images_per_second=count / seconds,
        peak_tree_rss_gib=usage.peak / 2**30,
        cores_busy=usage.cpu_seconds / seconds,
    )


def measure_decode(root, workers: int = 0) -> dict:
    """The decoding pass alone (validation and signatures, `decode.signatures`) over the download
    at `root`: its rate and how many cores it kept busy."""
    from artjax.data.wikiart import decode, layouts

    paths = list(layouts.read_painter_by_numbers(pathlib.Path(root)).images["path"])
    start = time.perf_counter()
    with TreeUsage() as usage:
        decode.signatures(paths, workers)
    seconds = time.perf_counter() - start
    return dict(
        images=len(paths),
        seconds=seconds,
        images_per_second=len(paths) / seconds,
        cores_busy=usage.cpu_seconds / seconds,
    )


def time_duplicate_groups(n: int, seed: int = 0) -> float:
    """Seconds of decode.duplicate_groups over `n` random signatures (the all-pairs step)."""
    from artjax.data.wikiart import decode

    rng = np.random.default_rng(seed)
    phashes = rng.integers(0, 2**63, n, dtype=np.uint64)
    thumbs = rng.standard_normal((n, 256)).astype(np.float32)
    start = time.perf_counter()
    decode.duplicate_groups(phashes, thumbs, 10, 0.85)
    return time.perf_counter() - start
