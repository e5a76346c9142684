"""Decodes every image once at build time: validates it and fingerprints it for duplicate detection.

The real data holds duplicate scans of one painting (e.g. Edgar_Degas_516 / Edgar_Degas_97). Two
images are near duplicates when their 64-bit DCT perceptual hashes are within `max_hamming` bits
*and* their 16x16 grey thumbnails correlate at least `min_correlation` (the hash alone confuses
similar portraits). Groups are the connected components of that relation; a split never cuts a
group.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib

import numpy as np
import scipy.fft
from PIL import Image

# Modes tf.io.decode_image turns into RGB by itself; anything else is re-encoded as RGB PNG.
TF_DECODABLE = {
    ("JPEG", "RGB"),
    ("JPEG", "L"),
    ("JPEG", "CMYK"),
    ("PNG", "RGB"),
    ("PNG", "L"),
    ("PNG", "RGBA"),
    ("PNG", "LA"),
}


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    phash: np.ndarray  # (63,) bool: DCT signs vs median, DC term left out
    thumb: np.ndarray  # (256,) float: standardized 16x16 grey thumbnail
    encoded: bytes  # bytes to store: the file itself, or an RGB PNG when TF could not decode it


def fingerprint(path: str | pathlib.Path) -> Fingerprint:
    """Fully decodes `path`; raises ValueError naming the file when it is not a readable image."""
    raw = pathlib.Path(path).read_bytes()
    if not raw:
        raise ValueError(f"{path}: empty file")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()  # raises on truncated data
            fmt, mode = im.format, im.mode
            rgb = im.convert("RGB")
    except Exception as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if (fmt, mode) not in TF_DECODABLE:
        buf = io.BytesIO()
        rgb.save(buf, "PNG")
        raw = buf.getvalue()
    phash, thumb = signature(rgb)
    return Fingerprint(phash=phash, thumb=thumb, encoded=raw)


def signature(rgb: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(phash, thumb) of a decoded RGB image (Fingerprint's fields)."""
    grey = rgb.convert("L")
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    dct = scipy.fft.dctn(small, norm="ortho")[:8, :8].ravel()[1:]
    thumb = np.asarray(grey.resize((16, 16), Image.Resampling.BOX), np.float64).ravel()
    thumb = (thumb - thumb.mean()) / (thumb.std() + 1e-6)
    return dct > np.median(dct), thumb


def duplicate_groups(
    fingerprints: list[Fingerprint], max_hamming: int, min_correlation: float
) -> np.ndarray:
    """Group id per image (the index of its group's first member); singletons are their own
    group."""
    n = len(fingerprints)
    parent = np.arange(n)
    if n == 0:
        return parent

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.stack([f.phash for f in fingerprints])
    thumbs = np.stack([f.thumb for f in fingerprints])
    for i in range(n - 1):  # row by row keeps memory at O(n) for large downloads
        hamming = (hashes[i + 1 :] != hashes[i]).sum(axis=1)
        for j in np.nonzero(hamming <= max_hamming)[0] + i + 1:
            if (thumbs[i] @ thumbs[j]) / thumbs.shape[1] >= min_correlation:
                parent[find(j)] = find(i)
    roots = np.array([find(i) for i in range(n)])
    first_member = {}
    for i, r in enumerate(roots):
        first_member.setdefault(r, i)
    return np.array([first_member[r] for r in roots])
