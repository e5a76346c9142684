"""The one decoding pass over a WikiArt download, streamed over worker processes: each image is
decoded in full once (validated) and reduced to its near-duplicate signature; only the signature
comes back, so memory stays bounded by the images in flight, not the download.

Light on imports (PIL, NumPy, SciPy): the workers start without TensorFlow.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import pathlib
from typing import NamedTuple

import numpy as np
from PIL import Image

from artjax.data import fingerprint as fingerprint_lib

# JPEGs decode at a reduced scale no smaller than this (libjpeg's DCT scaling still reads every
# block, so truncation is caught): a 40-megapixel scan costs what a 1-megapixel one does.
DRAFT_SIZE = (256, 256)
BLOCK = 64  # images in flight per worker
_BITS = 1 << np.arange(63, dtype=np.uint64)


class Signature(NamedTuple):
    phash: int  # the 63 DCT-sign bits of fingerprint.signature, packed
    thumb: np.ndarray  # (256,) float32
    reencode: bool  # TensorFlow cannot decode the file as it is: store it as RGB PNG
    error: str  # "" for a readable image; else why not (the image is skipped)


def pack(phash: np.ndarray) -> int:
    return int(np.sum(_BITS[np.asarray(phash, bool)]))


def decode_rgb(raw: bytes) -> tuple[Image.Image, bool]:
    """The RGB image (JPEGs at DRAFT_SIZE or above) and whether TensorFlow needs it re-encoded;
    raises ValueError for an empty or unreadable image."""
    if not raw:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            fmt, mode = im.format, im.mode
            if fmt == "JPEG":
                im.draft("RGB", DRAFT_SIZE)
            im.load()  # raises on truncated data
            return im.convert("RGB"), (fmt, mode) not in fingerprint_lib.TF_DECODABLE
    except Exception as e:
        raise ValueError(f"not a readable image ({e})") from e


def signature_of(item) -> Signature:
    """`item`: a file path (str) or the encoded bytes themselves."""
    try:
        raw = pathlib.Path(item).read_bytes() if isinstance(item, str) else item
        rgb, reencode = decode_rgb(raw)
    except (OSError, ValueError) as e:
        return Signature(0, np.zeros(256, np.float32), False, str(e))
    phash, thumb = fingerprint_lib.signature(rgb)
    return Signature(pack(phash), thumb.astype(np.float32), reencode, "")


def rgb_png(raw: bytes) -> bytes:
    """`raw` re-encoded as an RGB PNG at full resolution (what fingerprint.fingerprint stores)."""
    with Image.open(io.BytesIO(raw)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _init_worker():
    # WikiArt holds scans above PIL's decompression-bomb limit (89 MP); they are paintings.
    Image.MAX_IMAGE_PIXELS = None


def signatures(items, workers: int = 0) -> list[Signature]:
    """`signature_of` every item (paths or bytes, any iterable), in order, over `workers`
    processes (0: every core; 1: this process), BLOCK per worker in flight at a time."""
    workers = workers or os.cpu_count() or 1
    items = iter(items)
    if workers == 1:
        _init_worker()
        return [signature_of(i) for i in items]
    found = []
    # forkserver: workers fork from a clean process, never from one running TensorFlow's threads
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(workers, initializer=_init_worker) as pool:
        while block := list(itertools.islice(items, BLOCK * workers)):
            found += pool.map(signature_of, block, chunksize=8)
    return found


def duplicate_groups(phashes, thumbs, max_hamming: int, min_correlation: float) -> np.ndarray:
    """fingerprint.duplicate_groups on packed signatures: the same groups (tested), with the
    Hamming distances as popcounts of 64-bit words, fast enough for 100,000 paintings."""
    packed = np.asarray(phashes, np.uint64)
    thumbs = np.asarray(thumbs, np.float32)
    n = len(packed)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n - 1):
        near = np.bitwise_count(packed[i + 1 :] ^ packed[i]) <= max_hamming
        for j in np.flatnonzero(near) + i + 1:
            if float(thumbs[i] @ thumbs[j]) / thumbs.shape[1] >= min_correlation:
                parent[find(j)] = find(i)
    roots = np.array([find(i) for i in range(n)], np.int64)
    first_member = {}
    for i, r in enumerate(roots):
        first_member.setdefault(r, i)
    return np.array([first_member[r] for r in roots], np.int64)
