"""Cached backbone features as a batch source: a frozen backbone runs once per image, then the head
trains on its pooled features (minutes instead of hours on a CPU).

The batches have the layout of `input_pipeline`'s image batches ([local devices, per-device batch,
...], padded and masked for evaluation), with `image` holding features, so the same steps run on
them with the head's apply function (`artjax.models.head_apply`).
"""

from __future__ import annotations

import numpy as np

from artjax.data import input_pipeline as ip


def compute_features(p_features, variables, batches) -> dict[str, np.ndarray]:
    """Pooled backbone features of every real image in `batches` (eval_dataset batches)."""
    found = {"features": [], "label": [], "filename": []}
    for batch in batches:
        mask = batch["mask"].reshape(-1) == 1
        features = np.asarray(p_features(variables, batch["image"]), np.float32)
        found["features"].append(features.reshape(mask.size, -1)[mask])
        found["label"].append(batch["label"].reshape(-1)[mask])
        found["filename"].append(batch["filename"].reshape(-1)[mask])
    return {k: np.concatenate(v) for k, v in found.items()}


def train_batches(features: dict, config, num_devices: int, start_step: int, counts):
    """Endless shuffled batches of cached features, [devices, per-device, D]; reproducible per step,
    so a resumed run continues the same stream. Oversampling follows `data.oversample_power`. Each
    process holds the features of its own shard and draws its share of the global batch."""
    n, batch = len(features["label"]), ip.local_batch_size(config.batch_size, num_devices)
    steps_per_epoch = n // batch
    probs = None
    if config.data.oversample_power is not None:
        counts = np.asarray(counts, np.float64)
        class_p = ip.class_sampling_weights(counts, config.data.oversample_power)
        probs = class_p[features["label"]] / counts[features["label"]]
        probs /= probs.sum()
    step = start_step
    while True:
        epoch, i = divmod(step, steps_per_epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n) if probs is None else rng.choice(n, size=n, p=probs)
        idx = order[i * batch : (i + 1) * batch]
        yield {
            "image": features["features"][idx].reshape(num_devices, batch // num_devices, -1),
            "label": features["label"][idx].astype(np.int32).reshape(num_devices, -1),
        }
        step += 1


def eval_batches(features: dict, config, num_devices: int, split_size: int):
    """Padded, masked batches of cached features, laid out (and padded to the same batch count on
    every process) as eval_dataset lays out images; `split_size` counts the split's images on all
    processes."""
    n, batch = len(features["label"]), ip.local_batch_size(config.eval_batch_size, num_devices)
    padded = ip.padded_eval_size(split_size, batch)
    pad = padded - n
    feats = np.concatenate(
        [features["features"], np.zeros((pad, features["features"].shape[1]), np.float32)]
    )
    labels = np.concatenate([features["label"], np.zeros(pad, features["label"].dtype)]).astype(
        np.int32
    )
    mask = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    names = np.concatenate([features["filename"], np.array([b""] * pad, dtype=object)])
    for s in range(0, padded, batch):
        sl = slice(s, s + batch)
        yield {
            "image": feats[sl].reshape(num_devices, batch // num_devices, -1),
            "label": labels[sl].reshape(num_devices, -1),
            "mask": mask[sl].reshape(num_devices, -1),
            "filename": names[sl].reshape(num_devices, -1),
        }
