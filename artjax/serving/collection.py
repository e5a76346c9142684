"""The index of a collection beside an export (`artjax.export --index DATA_ROOT`): every painting's
embedding (the export's `embed`), file, artist, listed genres and a small JPEG thumbnail, in one
NumPy file (`INDEX_FILE`, read without pickle), and its nearest neighbours by cosine similarity.

Brute force: one matrix-vector product over the unit embeddings and a partial sort. For a few
thousand paintings that is well under a millisecond; where a vector index (faiss) pays is measured
by `python -m artjax.bench export` (BENCHMARKS.md, README).

Loading and searching need NumPy only (a TensorFlow-only server uses it); `build` needs the
library.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np

INDEX_FILE = "index.npz"
THUMBNAIL_SIDE = 128  # the longer side of a thumbnail, in pixels
THUMBNAIL_QUALITY = 85


class CollectionIndex:
    """Paintings `0 .. len - 1`: unit `embeddings` [N, D], and each one's `files` (relative to the
    collection's root), `artists`, `genres` (comma-separated) and JPEG thumbnail."""

    def __init__(self, path, embeddings, files, artists, genres, thumbnails, offsets, source=""):
        self.path = pathlib.Path(path)
        self.embeddings = np.asarray(embeddings, np.float32)
        self.files, self.artists, self.genres = list(files), list(artists), list(genres)
        self._thumbnails, self._offsets = np.asarray(thumbnails, np.uint8), np.asarray(offsets)
        self.source = source

    def __len__(self) -> int:
        return len(self.files)

    @classmethod
    def load(cls, path) -> "CollectionIndex":
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no collection index (artjax.export --index)")
        with np.load(path, allow_pickle=False) as found:
            return cls(
                path,
                found["embeddings"],
                found["files"].tolist(),
                found["artists"].tolist(),
                found["genres"].tolist(),
                found["thumbnails"],
                found["offsets"],
                str(found["source"]),
            )

    def save(self) -> None:
        np.savez(
            self.path,
            embeddings=self.embeddings,
            files=np.array(self.files, dtype=str),
            artists=np.array(self.artists, dtype=str),
            genres=np.array(self.genres, dtype=str),
            thumbnails=self._thumbnails,
            offsets=self._offsets,
            source=np.array(self.source),
        )

    def nearest(self, embedding, k: int = 8) -> list[tuple[int, float]]:
        """[(painting id, cosine similarity)] of the `k` most similar paintings, best first (ties
        by id)."""
        query = np.asarray(embedding, np.float32).reshape(-1)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        similarity = self.embeddings @ query
        k = min(k, len(similarity))
        if k <= 0:
            return []
        candidates = np.argpartition(-similarity, k - 1)[:k]
        order = candidates[np.lexsort((candidates, -similarity[candidates]))]
        return [(int(i), float(similarity[i])) for i in order]

    def thumbnail(self, painting: int) -> bytes:
        if not 0 <= painting < len(self):
            raise IndexError(f"painting {painting} is not in the index (0 .. {len(self) - 1})")
        return self._thumbnails[self._offsets[painting] : self._offsets[painting + 1]].tobytes()

    def describe(self, painting: int) -> dict:
        self.thumbnail(painting)  # validates the id
        genres = [g for g in self.genres[painting].split(",") if g]
        return dict(
            id=painting, file=self.files[painting], artist=self.artists[painting], genres=genres
        )


def thumbnail_of(path) -> bytes:
    """A JPEG of the image at most THUMBNAIL_SIDE pixels on its longer side."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def build(workdir, data_root, output, checkpoint: str = "best", batch_size: int = 32):
    """Embeds every painting of the Kaggle-layout folder `data_root` with the run (or bag) at
    `workdir` and writes the index to `output`/INDEX_FILE; export.json there, if any, records it.
    Files that are not readable images are left out with a warning naming them."""
    import logging

    import jax
    import tensorflow as tf

    from artjax.data import catalog
    from artjax.data import input_pipeline as ip
    from artjax.data import preprocess as pp
    from artjax.serving import exported, inference, records

    data_root = pathlib.Path(data_root)
    images = catalog.read_catalog(data_root, include_multi_genre=True).images
    fns = exported.model_functions(workdir, checkpoint)
    embed = jax.jit(fns.embed)
    preprocess = pp.compose(ip.eval_ops(fns.info["data"]))
    rows, inputs, embeddings = [], [], []

    def flush():
        count = len(inputs)
        padded = inputs + [inputs[0]] * (batch_size - count)  # one compiled batch size
        embeddings.append(np.asarray(embed(fns.weights, np.stack(padded)))[:count])
        inputs.clear()

    for row in images.itertuples():
        try:
            encoded = inference.readable_image(row.path)
        except (ValueError, OSError) as e:
            logging.warning("left out of the index: %s", e)
            continue
        rows.append(row)
        inputs.append(np.asarray(preprocess({"image": tf.constant(encoded)})["image"]))
        if len(inputs) == batch_size:
            flush()
    if inputs:
        flush()
    if not rows:
        raise catalog.DataError(f"{data_root}: no readable paintings to index")
    thumbnails = [np.frombuffer(thumbnail_of(row.path), np.uint8) for row in rows]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in thumbnails])])
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    index = CollectionIndex(
        output / INDEX_FILE,
        np.concatenate(embeddings),
        [pathlib.Path(row.path).relative_to(data_root).as_posix() for row in rows],
        [row.artist for row in rows],
        [row.genres for row in rows],
        np.concatenate(thumbnails),
        offsets,
        source=str(data_root),
    )
    index.save()
    record_path = output / records.EXPORT_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        record["index"] = dict(
            file=INDEX_FILE, paintings=len(index), dimensions=int(index.embeddings.shape[1])
        )
        record_path.write_text(json.dumps(record, indent=2))
    return index
