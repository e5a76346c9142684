""" "Not a painting": the mean cosine distance of an image's embedding (the export's `embed`: the
head's input, averaged over the views, unit length) to its `gate.k` nearest training paintings',
against a threshold fitted on paintings only.

The threshold is the `gate.percentile` of the distances of held-out artists' paintings in a
leave-artists-out CV (`fit_cv`): each fold's held-out paintings against that fold's training
paintings, so that share of paintings by painters the model never saw pass. Unseen painters lie
further from the training set than seen ones, which is why the threshold comes from them. A run's
gate (`fit_run`) keeps its own training paintings' embeddings as references, with the CV's
threshold. Images that are not paintings are never used to fit it.

The gate lives beside a run as `gate.npz` (NumPy only, read without pickle), and the export
copies it (`artjax.serving.exported`), so the service and any application can apply it.
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import numpy as np

GATE_FILE = "gate.npz"  # a run's gate: references, k and threshold
CV_GATE_FILE = "gate.json"  # a CV's threshold and the held-out distances' summary


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_distance(queries: np.ndarray, references: np.ndarray, k: int, chunk: int = 512):
    """[M] the mean cosine distance (1 - cosine similarity) of each unit query to its k nearest
    unit references."""
    queries, references = unit(queries), unit(references)
    k = max(1, min(k, len(references)))
    found = []
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ references.T
        nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
        found.append(1.0 - nearest.mean(1))
    return np.concatenate(found) if found else np.zeros(0, np.float32)


class Gate(NamedTuple):
    references: np.ndarray  # [N, D] unit embeddings of the training paintings
    k: int
    threshold: float  # a distance above it: not a painting
    percentile: float
    source: str  # where the threshold was fitted

    def distances(self, embeddings) -> np.ndarray:
        return knn_distance(np.atleast_2d(embeddings), self.references, self.k)

    def save(self, path) -> pathlib.Path:
        path = pathlib.Path(path)
        path = path / GATE_FILE if path.is_dir() else path
        np.savez(
            path,
            references=self.references.astype(np.float16),  # half the size; distances to 1e-3
            k=np.int32(self.k),
            threshold=np.float32(self.threshold),
            percentile=np.float32(self.percentile),
            source=np.array(self.source),
        )
        return path

    @classmethod
    def load(cls, path) -> "Gate":
        path = pathlib.Path(path)
        path = path / GATE_FILE if path.is_dir() else path
        with np.load(path, allow_pickle=False) as found:
            return cls(
                unit(found["references"].astype(np.float32)),
                int(found["k"]),
                float(found["threshold"]),
                float(found["percentile"]),
                str(found["source"]),
            )

    def summary(self) -> dict:
        return dict(
            k=self.k,
            threshold=self.threshold,
            percentile=self.percentile,
            references=len(self.references),
            source=self.source,
        )


def load_if_any(workdir) -> Gate | None:
    path = pathlib.Path(workdir) / GATE_FILE
    return Gate.load(path) if path.is_file() else None


def threshold_of(distances: np.ndarray, percentile: float) -> float:
    """The distance below which `percentile`% of `distances` lie (linear interpolation)."""
    if len(distances) == 0:
        raise ValueError("no distances to fit the gate's threshold on")
    return float(np.percentile(np.asarray(distances, np.float64), percentile))


def fit_cv(folds, k: int, percentile: float) -> dict:
    """The threshold from a leave-artists-out CV. `folds`: (name, held-out embeddings [n, D],
    held-out artists [n], training embeddings [m, D]) per fold."""
    distances, artists, per_fold = [], [], {}
    for name, held, held_artists, training in folds:
        found = knn_distance(held, training, k)
        distances.append(found)
        artists += list(held_artists)
        per_fold[name] = dict(paintings=len(found), median=float(np.median(found)))
    distances = np.concatenate(distances)
    threshold = threshold_of(distances, percentile)
    per_artist = {
        a: float(np.mean(distances[np.array(artists) == a] > threshold))
        for a in sorted(set(artists))
    }
    return dict(
        k=k,
        percentile=percentile,
        threshold=threshold,
        paintings=len(distances),
        flagged=float(np.mean(distances > threshold)),
        flagged_per_artist=per_artist,
        per_fold=per_fold,
    )


def write_cv(workdir, fitted: dict) -> pathlib.Path:
    path = pathlib.Path(workdir) / CV_GATE_FILE
    path.write_text(json.dumps(fitted, indent=2))
    return path


def read_cv(workdir) -> dict:
    path = pathlib.Path(workdir) / CV_GATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no gate fitted on this CV (python -m artjax.fit_gate --workdir {workdir})"
        )
    return json.loads(path.read_text())
