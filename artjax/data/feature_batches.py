"""Cached backbone features as a batch source: a frozen backbone runs once per image, then the head
trains on its pooled features (minutes instead of hours on a CPU).

The batches have the layout of `input_pipeline`'s image batches ([local devices, per-device batch,
...], padded and masked for evaluation), with `image` holding features, so the same steps run on
them with the head's apply function (`artjax.models.head_apply`). Runs that name a cache directory
(`freeze.feature_cache`; the folds of a cross-validation) share one computation of every image's
features.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from artjax.data import input_pipeline as ip


def compute_features(p_features, variables, batches) -> dict[str, np.ndarray]:
    """Pooled backbone features of every real image in `batches` (eval_dataset batches)."""
    found = {"features": [], "label": [], "filename": []}
    for batch in batches:
        mask = batch["mask"].reshape(-1) == 1
        features = np.asarray(p_features(variables, batch["image"]), np.float32)
        found["features"].append(features.reshape(mask.size, *features.shape[2:])[mask])
        labels = batch["label"]
        found["label"].append(labels.reshape(mask.size, *labels.shape[2:])[mask])
        found["filename"].append(batch["filename"].reshape(-1)[mask])
    return {k: np.concatenate(v) for k, v in found.items()}


def _label_array(labels) -> np.ndarray:
    """Class indices as int32, or multi-hot targets (multi-label class sets) as float32."""
    return np.asarray(labels, np.int32 if np.ndim(labels) == 1 else np.float32)


def train_batches(features: dict, config, num_devices: int, start_step: int, probs=None):
    """Endless shuffled batches of cached features, [devices, per-device, D]; reproducible per step,
    so a resumed run continues the same stream. `probs` (each example's, e.g.
    `input_pipeline.example_sampling_probabilities`): draws with replacement at those rates; None:
    a permutation per epoch. Each process holds the features of its own shard and draws its share
    of the global batch."""
    if features["features"].ndim == 3:  # views [N, V, D]: each view is a training example
        views = features["features"].shape[1]
        features = {
            "features": features["features"].reshape(-1, features["features"].shape[-1]),
            **{
                k: np.repeat(features[k], views, axis=0)
                for k in ("label", "era", "artist")
                if k in features
            },
        }
        probs = None if probs is None else np.repeat(probs, views) / views
    n, batch = len(features["label"]), ip.local_batch_size(config.batch_size, num_devices)
    steps_per_epoch = n // batch
    labels = _label_array(features["label"])
    step = start_step
    while True:
        epoch, i = divmod(step, steps_per_epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n) if probs is None else rng.choice(n, size=n, p=probs)
        idx = order[i * batch : (i + 1) * batch]
        found = {
            "image": features["features"][idx].reshape(num_devices, batch // num_devices, -1),
            "label": labels[idx].reshape(num_devices, batch // num_devices, *labels.shape[1:]),
        }
        if "era" in features:  # the artists' active periods, for an era head
            found["era"] = features["era"][idx].reshape(num_devices, batch // num_devices, 2)
        if "artist" in features:  # artist ids, for CORAL across artists
            found["artist"] = features["artist"][idx].reshape(num_devices, batch // num_devices)
        yield found
        step += 1


def eval_batches(features: dict, config, num_devices: int, split_size: int):
    """Padded, masked batches of cached features, laid out (and padded to the same batch count on
    every process) as eval_dataset lays out images; `split_size` counts the split's images on all
    processes."""
    n, batch = len(features["label"]), ip.local_batch_size(config.eval_batch_size, num_devices)
    padded = ip.padded_eval_size(split_size, batch)
    pad = padded - n
    shape = features["features"].shape[1:]  # [D], or [V, D] for views
    feats = np.concatenate([features["features"], np.zeros((pad, *shape), np.float32)])
    labels = _label_array(features["label"])
    labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
    mask = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    names = np.concatenate([features["filename"], np.array([b""] * pad, dtype=object)])
    for s in range(0, padded, batch):
        sl = slice(s, s + batch)
        yield {
            "image": feats[sl].reshape(num_devices, batch // num_devices, *shape),
            "label": labels[sl].reshape(num_devices, batch // num_devices, *labels.shape[1:]),
            "mask": mask[sl].reshape(num_devices, -1),
            "filename": names[sl].reshape(num_devices, -1),
        }


# --- a feature cache shared by runs (the folds of a cross-validation) ----------------------------
CACHE_FEATURES, CACHE_IDENTITY = "features.npz", "features.json"
# model settings of the heads alone, which do not change the backbone's features
HEAD_SETTINGS = (
    "dropout_rate",
    "era_head",
    "head_hidden",
    "era_bins",
    "era_bin_start",
    "era_bin_years",
    "era_style_weight",
    "style_years",
)


def cache_identity(config) -> dict:
    """What a frozen backbone's features depend on: the weights, the architecture and its kernels,
    the input size and normalization, and the download."""
    init = (
        pathlib.Path(config.init.checkpoint).expanduser().absolute()
        if config.init.checkpoint
        else ""
    )
    return dict(
        init_checkpoint=str(init),
        init_workdir_checkpoint=config.init.workdir_checkpoint,
        model={k: v for k, v in config.model.to_dict().items() if k not in HEAD_SETTINGS},
        image_size=config.data.image_size,
        normalization=config.data.normalization,
        views=config.data.views,
        crop_fraction=config.data.crop_fraction,
        data_root=str(pathlib.Path(config.data.root).expanduser().absolute()),
        prepared_dir=str(pathlib.Path(config.data.prepared_dir).expanduser().absolute()),
    )


def read_cache(cache_dir, identity: dict) -> dict[str, np.ndarray]:
    """{filename: features} of every image in the cache in `cache_dir` when it was made with
    `identity`; {} otherwise."""
    cache_dir = pathlib.Path(cache_dir)
    meta = cache_dir / CACHE_IDENTITY
    if not meta.is_file() or json.loads(meta.read_text()) != json.loads(json.dumps(identity)):
        return {}
    with np.load(cache_dir / CACHE_FEATURES, allow_pickle=False) as stored:
        return dict(zip(stored["filename"].tolist(), stored["features"]))


def load_cache(cache_dir, identity: dict, files) -> dict[str, np.ndarray] | None:
    """`read_cache` when it holds every one of `files`; None otherwise."""
    found = read_cache(cache_dir, identity)
    return found if found and set(files) <= set(found) else None


def save_cache(cache_dir, identity: dict, features: dict) -> None:
    """Writes the cache atomically (a crash leaves the old cache or none, never half of one)."""
    cache_dir = pathlib.Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    names = sorted(features)
    partial = cache_dir / (CACHE_FEATURES + ".partial.npz")
    np.savez(partial, filename=np.array(names), features=np.stack([features[n] for n in names]))
    partial.rename(cache_dir / CACHE_FEATURES)
    (cache_dir / CACHE_IDENTITY).write_text(json.dumps(identity, indent=2))


def photo_key(config, filename: str, view: int) -> str:
    """The cache key of a painting's `view`-th photo view (`data.photo_views`): the simulator's
    settings are in it, so other settings make other keys and the clean features stay."""
    import hashlib

    settings = {k: v for k, v in config.photos.to_dict().items() if k != "scenes"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{filename}#photo{view}:{config.seed}:{digest}"


def with_photo_views(split_features: dict, config, features: dict) -> dict:
    """A split's cached features followed by each painting's `data.photo_views` photo views (the
    same labels, era targets and filenames, so draws and balancing see the same paintings)."""
    views = config.data.photo_views
    if not views:
        return split_features
    names = [f.decode() for f in split_features["filename"]]
    extra = [np.stack([features[photo_key(config, n, k)] for n in names]) for k in range(views)]
    out = {"features": np.concatenate([split_features["features"], *extra])}
    for key, value in split_features.items():
        if key != "features":
            out[key] = np.concatenate([value] * (views + 1))
    return out


def split_features(data, split: str, features: dict, periods=None) -> dict[str, np.ndarray]:
    """A split's cached features, labels and filenames, in the order of `data.rows`; with the
    artists' active `periods`, each painting's era target too (`input_pipeline.era_targets`)."""
    rows = [r for r in data.rows if r.filename in data.members[split]]
    found = {
        "features": np.stack([features[r.filename] for r in rows]),
        "label": ip.numpy_labels(data, rows),
        "filename": np.array([r.filename.encode() for r in rows], dtype=object),
    }
    if periods is not None:
        found["era"] = ip.era_targets(data, [r.filename for r in rows], periods)
    return found
