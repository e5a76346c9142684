"""Fitting the "not a painting" gate (`artjax.gate`) of a run or of a leave-artists-out CV, from the
embeddings of its paintings (`python -m artjax.fit_gate`).

The embedding is the export's `embed`: the head's input, averaged over the views, unit length. A
frozen backbone's runs read the features from their feature cache (`freeze.feature_cache`, the
folds of a CV share one); other runs compute them with the run's own model.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from artjax import checkpointing, gate, hooks, models, train_state, trainer, transfer
from artjax.data import feature_batches
from artjax.data import input_pipeline as ip


def _embeddings(model, variables, features: np.ndarray) -> np.ndarray:
    """Features [n, V, D] (or [n, D]) -> unit embeddings: the head's input, mean over views."""
    head_input = jax.jit(lambda v, f: model.apply(v, f, method="head_input"))
    found = np.asarray(head_input(variables, np.asarray(features, np.float32)))
    return gate.unit(found.mean(1) if found.ndim == 3 else found)


def painting_embeddings(workdir, held=()) -> tuple:
    """(unit embeddings [n, D] of the run's train and val paintings and of the photo views it
    trained on, their keys, the embeddings of `held` (other paintings of its class set; None
    without), the run's data), by the model of a run's best checkpoint: the run, its data and its
    feature cache are read once for both sets."""
    config, run, state, _ = train_state.load_run(workdir, "best")
    if not hasattr(models.create_model(config.model, len(run["classes"])), "features"):
        raise ValueError(
            f"{workdir}: the gate needs a backbone's features (model.name resnet or "
            "efficientnet_lite), not the CNN's"
        )
    data = ip.prepare_data(config.data, config.seed)
    files = sorted(data.members["train"] | data.members["val"])
    model, plan = train_state.build_model(config, len(run["classes"]))
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    cached = {}
    if config.freeze.feature_cache and transfer.uses_cached_features(config, plan):
        cached = feature_batches.read_cache(
            config.freeze.feature_cache, feature_batches.cache_identity(config)
        )
    missing = sorted((set(files) | set(held)) - set(cached))
    if missing:
        compute = trainer.feature_pass(config, model, state, jax.local_device_count())
        computed = compute(ip.with_images(data, "gate", missing), "gate")
        cached = dict(cached)
        cached.update(zip((f.decode() for f in computed["filename"]), computed["features"]))
        hooks.report(f"backbone features of {len(missing)} paintings computed for the gate")
    # a run trained on photo views (data.photo_views) knows its paintings as photos too: those
    # views join the references (their keys name the painting and the view)
    views = [
        key
        for f in files
        if f in data.members["train"]
        for k in range(config.data.photo_views)
        if (key := feature_batches.photo_key(config, f, k)) in cached
    ]
    keys = files + views
    references = _embeddings(model, variables, np.stack([cached[k] for k in keys]))
    held_embeddings = (
        _embeddings(model, variables, np.stack([cached[f] for f in held])) if held else None
    )
    return references, keys, held_embeddings, data


def fit_cv(cv_workdir, config_gate) -> dict:
    """The threshold from a CV's folds (held-out artists' paintings against the fold's training
    paintings), written to the CV's gate.json; also the CV's own gate.npz (its paintings as
    references), for evaluating or predicting with the CV's bag."""
    folds, every = [], {}
    for fold_dir in checkpointing.fold_workdirs(cv_workdir):
        held, _ = _heldout_of(fold_dir)
        embeddings, files, held_embeddings, data = painting_embeddings(fold_dir, held)
        every.update(zip(files, embeddings))
        every.update(zip(held, held_embeddings))
        folds.append((fold_dir.name, held_embeddings, ip.artists_of(data, held), embeddings))
        hooks.report(f"gate: {fold_dir.name}, {len(held)} held-out paintings")
    fitted = gate.fit_cv(folds, config_gate.k, config_gate.percentile)
    gate.write_cv(cv_workdir, fitted)
    source = f"{fitted['percentile']:g}th percentile of the held-out artists of {cv_workdir}"

    def save(references, where):
        found = gate.Gate(
            references, config_gate.k, fitted["threshold"], fitted["percentile"], source
        )
        found.save(pathlib.Path(where))

    # each fold's own gate (its training paintings), so a fold model judges its held-out
    # artists as a model trained without them would; the CV's bag knows every painting
    for fold_dir, (_, _, _, training) in zip(checkpointing.fold_workdirs(cv_workdir), folds):
        save(training, fold_dir)
    save(np.stack([every[f] for f in sorted(every)]), cv_workdir)
    return fitted


def _heldout_of(fold_dir) -> tuple[list[str], dict]:
    from artjax import crossval  # the CV's records; imported here: it pulls in the evaluation

    found, record = crossval.load_heldout(fold_dir)
    return list(found.filenames), record


def fit_run(workdir, from_cv: str) -> gate.Gate:
    """A run's gate: its train and val paintings as references, the CV's threshold."""
    fitted = gate.read_cv(from_cv)
    embeddings, _, _, _ = painting_embeddings(workdir)
    source = f"{fitted['percentile']:g}th percentile of the held-out artists of {from_cv}"
    found = gate.Gate(
        embeddings, int(fitted["k"]), fitted["threshold"], fitted["percentile"], source
    )
    found.save(pathlib.Path(workdir))
    return found
