"""Evaluation: the masked pass over a split's batches, sklearn's metrics, and a workdir's report.

`evaluate(workdir, split, checkpoint)` writes `workdir/eval_<split>/`: report.json (accuracy,
balanced accuracy, macro and weighted P/R/F1, per-class P/R/F1/support, confusion matrix; all from
sklearn), predictions.csv, the confusion matrix, a classification-report heatmap, train/val curves,
a per-class accuracy table and a grid of misclassified images (the study's figures,
`artjax.figures`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import pathlib

import jax
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from artjax import (
    calibration,
    checkpointing,
    era,
    figures,
    models,
    steps,
    train_state,
    transfer,
)
from artjax.data import catalog, feature_batches, synthetic
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp
from artjax.serving import inference


def evaluate_split(p_eval_step, state, batches, split: str) -> tuple[dict, dict]:
    """Metrics of one pass over a split's padded batches (from the step's on-device sums), and the
    labels, logits and filenames of its real (unpadded) images; an eval step with an era head's
    outputs ((logits, era), sums) gives the era estimates too ("era", in `artjax.era` units)."""
    sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    found = {"labels": [], "logits": [], "filenames": []}
    for batch in batches:
        filenames = batch.pop("filename").reshape(-1)
        batch_logits, batch_sums = p_eval_step(state, batch)
        if isinstance(batch_logits, tuple):
            batch_logits, batch_era = batch_logits
            mask = batch["mask"].reshape(-1) == 1
            found.setdefault("era", []).append(np.asarray(batch_era, np.float32).reshape(-1)[mask])
        sums = {k: sums[k] + float(batch_sums[k][0]) for k in sums}
        mask = batch["mask"].reshape(-1) == 1
        labels = batch["label"]
        found["labels"].append(labels.reshape(mask.size, *labels.shape[2:])[mask])
        found["logits"].append(np.asarray(batch_logits, np.float32).reshape(mask.size, -1)[mask])
        found["filenames"].append(filenames[mask])
    count = max(sums["count"], 1.0)
    metrics = {f"{split}_loss": sums["loss"] / count, f"{split}_accuracy": sums["correct"] / count}
    return metrics, {k: np.concatenate(v) for k, v in found.items()}


class UnsupportedRunError(ValueError):
    """A run that an evaluation mode does not take (e.g. shortcut probes of a multi-label run)."""


def classification_report(labels, predictions, classes) -> dict:
    idx = list(range(len(classes)))
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, predictions, labels=idx, zero_division=0
    )
    report = {
        "accuracy": skm.accuracy_score(labels, predictions),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predictions),
        "confusion_matrix": skm.confusion_matrix(labels, predictions, labels=idx).tolist(),
        "per_class": {
            c: {"precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
            for i, c in enumerate(classes)
        },
    }
    for average in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(
            labels, predictions, labels=idx, average=average, zero_division=0
        )
        report[average] = {"precision": ap, "recall": ar, "f1": af}
    return json.loads(json.dumps(report, default=float))


def per_class_table(report, classes) -> str:
    lines = ["| class | accuracy (recall) | support |", "|---|---:|---:|"]
    lines += [
        f"| {c} | {report['per_class'][c]['recall']:.3f} | {report['per_class'][c]['support']} |"
        for c in classes
    ]
    return "\n".join(lines) + "\n"


def results_table(workdirs, split: str = "test") -> str:
    """A markdown table of single-label runs, a row per workdir, in RESULTS.md's study columns:
    the evaluated split's metrics and per-class recall (from eval_<split>/report.json, written by
    `evaluate`), the best validation epoch and the training time (from metrics.jsonl) and the
    settings that differ between rows. The class columns are the first evaluated run's classes."""
    rows, classes = [], None
    for workdir in map(pathlib.Path, workdirs):
        run = json.loads((workdir / checkpointing.RUN_FILE).read_text())
        logged = checkpointing.read_metrics(workdir)
        path = workdir / f"eval_{split}" / "report.json"
        report = json.loads(path.read_text()) if path.is_file() else None
        if report is not None and "accuracy" not in report:
            raise ValueError(f"{path}: a multi-label report; the table takes single-label runs")
        classes = classes or (report and run["classes"])
        rows.append((workdir, run, logged, report))
    classes = classes or []
    header = ["run", "model", "image size", "class weights", "epochs", f"{split} accuracy"]
    header += ["balanced accuracy", "macro F1"] + [f"recall: {c}" for c in classes]
    header += ["best val acc (epoch)", "train time"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---|---:|---|---:|" + "---:|" * (len(header) - 5),
    ]
    for workdir, run, logged, report in rows:
        config = run["config"]
        model = run["model"]["name"] + (
            str(run["model"]["depth"]) if run["model"]["name"] == "resnet" else ""
        )
        model += f" ({run['model']['dtype']})"
        weights = "none"
        if config["class_weighted"]:
            weights = "normalized" if config["normalize_class_weights"] else "Keras sum/batch"
        validated = [m for m in logged if "val_accuracy" in m]
        best = max(validated, key=lambda m: m["val_accuracy"], default=None)
        seconds = sum(m.get("epoch_seconds", 0.0) for m in logged)
        cells = [workdir.name, model, str(run["image_size"]), weights]
        cells.append(f"{logged[-1]['epoch'] if logged else 0} of {config['num_epochs']}")
        if report is None:
            cells += ["not evaluated"] + [""] * (2 + len(classes))
        else:
            cells += [f"{report[k]:.3f}" for k in ("accuracy", "balanced_accuracy")]
            cells.append(f"{report['macro']['f1']:.3f}")
            per_class = report["per_class"]
            cells += [f"{per_class[c]['recall']:.3f}" if c in per_class else "" for c in classes]
        cells.append(f"{best['val_accuracy']:.3f} ({best['epoch']})" if best else "")
        cells.append(f"{seconds / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def multilabel_report(targets, probabilities, classes) -> dict:
    """mAP over the classes that have positives, each class's AP, and the share of images whose top
    class is one of their listed classes."""
    targets, probabilities = np.asarray(targets), np.asarray(probabilities)
    per_class = {}
    for i, c in enumerate(classes):
        positives = int(targets[:, i].sum())
        ap = skm.average_precision_score(targets[:, i], probabilities[:, i]) if positives else None
        per_class[c] = {"average_precision": ap, "support": positives}
    scored = [
        v["average_precision"] for v in per_class.values() if v["average_precision"] is not None
    ]
    top = probabilities.argmax(-1)
    report = {
        "mean_average_precision": float(np.mean(scored)) if scored else None,
        "top1_within_listed": float(np.mean(targets[np.arange(len(top)), top] > 0)),
        "per_class": per_class,
    }
    return json.loads(json.dumps(report, default=float))


def artist_shares(artists, predicted, artist_genres: dict, classes) -> dict:
    """Per artist: the share of their paintings whose top-1 class is one of the genres their CSV row
    lists, and the histogram of the predictions; overall (every scored painting) and the macro mean
    over artists. Artists with no listed genre among `classes` are listed and not scored."""
    by_artist = collections.defaultdict(list)
    for artist, p in zip(artists, predicted):
        by_artist[artist].append(p)
    per_artist, skipped = {}, []
    for artist in sorted(by_artist):
        listed = tuple(artist_genres.get(artist, ()))
        if not set(listed) & set(classes):
            skipped.append(artist)
            continue
        found = by_artist[artist]
        hits = sum(p in listed for p in found)
        per_artist[artist] = {
            "listed_genres": list(listed),
            "images": len(found),
            "share_listed": hits / len(found),
            "predicted": dict(collections.Counter(found).most_common()),
        }
    images = sum(v["images"] for v in per_artist.values())
    hits = sum(v["share_listed"] * v["images"] for v in per_artist.values())
    return {
        "per_artist": per_artist,
        "overall_share_listed": hits / images if images else None,
        "macro_share_listed": (
            float(np.mean([v["share_listed"] for v in per_artist.values()])) if per_artist else None
        ),
        "artists_not_scored": skipped,
    }


def near_miss_shares(artists, predicted, artist_genres: dict, classes, neighbours: dict) -> dict:
    """Per artist scored as `artist_shares` scores them (from its histograms): the share of their
    paintings whose top-1 class is none of their listed genres but a neighbour in time of one
    (`neighbours`: catalog.time_neighbours); the macro mean over those artists and the share of
    every scored painting."""
    scored = artist_shares(artists, predicted, artist_genres, classes)["per_artist"]
    per_artist, near_count = {}, 0
    for artist, v in scored.items():
        listed = set(v["listed_genres"])
        near = {n for genre in listed & set(neighbours) for n in neighbours[genre]} - listed
        hits = sum(n for p, n in v["predicted"].items() if p in near)
        per_artist[artist] = hits / v["images"]
        near_count += hits
    total = sum(v["images"] for v in scored.values())
    return {
        "per_artist": per_artist,
        "macro_near_miss": float(np.mean(list(per_artist.values()))) if per_artist else None,
        "overall_near_miss": near_count / total if total else None,
        "neighbours": {k: list(v) for k, v in neighbours.items()},
    }


@dataclasses.dataclass
class Predictions:
    """A model's (or a bag's) probabilities on a split, with what they are scored against."""

    classes: list
    multi_label: bool
    labels: np.ndarray  # class indices [N], or multi-hot targets [N, C]
    probabilities: np.ndarray  # [N, C]
    filenames: list
    artists: list
    loss: float | None = None
    era_years: np.ndarray | None = None  # [N] the era head's estimates, where the model has one

    @property
    def predicted(self) -> list:
        return [self.classes[i] for i in self.probabilities.argmax(-1)]

    def report(self, artist_genres: dict) -> dict:
        if self.multi_label:
            found = multilabel_report(self.labels, self.probabilities, self.classes)
        else:
            found = classification_report(self.labels, self.probabilities.argmax(-1), self.classes)
        found["artists"] = artist_shares(self.artists, self.predicted, artist_genres, self.classes)
        return found

    def era_report(self, periods: dict) -> dict | None:
        """`artjax.era.report` of the era estimates against the artists' active periods."""
        if self.era_years is None:
            return None
        return era.report(self.era_years, self.artists, periods)


def _data_for(config, run, workdir) -> ip.PreparedData:
    data = ip.prepare_data(config.data, config.seed)
    if list(data.classes) != run["classes"]:
        raise checkpointing.CheckpointMismatchError(
            f"{workdir}: data now gives classes {list(data.classes)}, "
            f"the checkpoint has {run['classes']}"
        )
    return data


def model_predictions(config, run, state, data, split: str, probe: str = "") -> Predictions:
    """The full model (images in) on one of `data`'s splits, each image under the shortcut
    `probe` if one is named (preprocess.SHORTCUT_PROBES)."""
    num_devices = jax.local_device_count()
    with_era, apply_fn = bool(config.model.era_head), None
    if with_era:
        model, _ = train_state.build_model(config, len(data.classes), axis_name=None)
        apply_fn = models.call_with_era(model)
    eval_step = functools.partial(
        steps.eval_step,
        apply_fn=apply_fn,
        multi_label_loss=config.multi_label_loss,
        with_era=with_era,
    )
    p_eval_step = jax.pmap(eval_step, axis_name=steps.AXIS)
    batches = ip.eval_dataset(data, split, config, num_devices, probe).as_numpy_iterator()
    metrics, found = evaluate_split(p_eval_step, steps.replicate(state), batches, split)
    return predictions_of(
        config,
        data,
        found["logits"],
        found["labels"],
        found["filenames"],
        metrics[f"{split}_loss"],
        found.get("era"),
    )


def split_predictions(workdir, split: str, checkpoint: str = "best"):
    """(predictions, data, config) of a workdir's checkpoint on one of its splits: the head on the
    shared cached features for a frozen backbone with `freeze.feature_cache`, else the full model
    on images."""
    config, run, state, _ = train_state.load_run(workdir, checkpoint)
    data = ip.prepare_data(config.data, config.seed)
    model, plan = train_state.build_model(config, len(data.classes), axis_name=None)
    if not (transfer.uses_cached_features(config, plan) and config.freeze.feature_cache):
        return model_predictions(config, run, state, data, split), data, config
    identity = feature_batches.cache_identity(config)
    files = [r.filename for r in data.rows]
    cached = feature_batches.load_cache(config.freeze.feature_cache, identity, files)
    if cached is None:
        raise FileNotFoundError(f"{config.freeze.feature_cache}: the feature cache is missing")
    found = feature_batches.split_features(data, split, cached)
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    # the heads' outputs: logits, or (logits, era estimates) from one head input
    apply_fn = functools.partial(
        model.apply, method="classify_with_era" if config.model.era_head else "classify"
    )
    outputs = jax.jit(functools.partial(steps.view_mean_logits, apply_fn))(
        variables, found["features"]
    )
    logits, estimates = outputs if config.model.era_head else (outputs, None)
    predictions = predictions_of(
        config, data, logits, found["label"], found["filename"], era_units=estimates
    )
    return predictions, data, config


def calibrate(workdir, checkpoint: str = "best") -> dict:
    """Fits the temperature and the "uncertain" threshold on the validation split of the
    workdir's `checkpoint`; writes calibration.json and returns what it holds. With
    `calibration.from_cv`, the temperature and threshold are that CV's, fitted on its held-out
    artists (the validation figures then show what they do on seen artists)."""
    step = checkpointing.resolve_step(workdir, checkpoint)
    found, _, config = split_predictions(workdir, "val", str(step))
    unseen = (
        calibration.load_unseen_artists(config.calibration.from_cv, found.classes)
        if config.calibration.from_cv
        else None
    )
    fitted = calibration.fit(
        found.probabilities,
        found.labels,
        found.multi_label,
        config.calibration.confident_accuracy,
        temperature=unseen["temperature"] if unseen else None,
    )
    if unseen:
        fitted.update(
            uncertain_below=unseen["uncertain_below"], from_cv=str(config.calibration.from_cv)
        )
    calibration.save(workdir, step, checkpoint, fitted)
    return fitted


def predictions_of(
    config, data, logits, labels, filenames, loss=None, era_units=None
) -> Predictions:
    """Predictions of `data`'s images (byte-string `filenames`) from their logits (and an era
    head's estimates)."""
    filenames = [f.decode() for f in filenames]
    probs = steps.probabilities(logits, data.multi_label, config.multi_label_loss)
    return Predictions(
        classes=list(data.classes),
        multi_label=data.multi_label,
        labels=labels,
        probabilities=np.asarray(probs),
        filenames=filenames,
        artists=ip.artists_of(data, filenames),
        loss=loss,
        era_years=None if era_units is None else era.to_years(era_units),
    )


def bag_predictions(cv_workdir, split: str, checkpoint: str = "best"):
    """The fold models' averaged probabilities (each temperature-scaled where it was calibrated) on
    `split` as a plain run of their config draws it (no cross-validation fold: "test" is the fixed
    test split). Returns (predictions, data, run)."""
    probabilities, estimates, data, first = [], [], None, None
    for fold_dir in checkpointing.fold_workdirs(cv_workdir):
        config, run, state, step = train_state.load_run(fold_dir, checkpoint)
        if data is None:
            config.data.cv.by = ""
            data = _data_for(config, run, fold_dir)
        found = model_predictions(config, run, state, data, split)
        if first is None:
            first = found
        elif found.filenames != first.filenames:
            raise checkpointing.CheckpointMismatchError(f"{fold_dir}: another {split} split")
        fitted = calibration.load(fold_dir, step)
        probabilities.append(calibration.apply(found.probabilities, fitted, found.multi_label))
        estimates.append(found.era_years)
    first.probabilities = np.mean(probabilities, axis=0)
    # the bag's era: the mean estimate of its models that have an era head
    with_era = [e for e in estimates if e is not None]
    first.era_years = np.mean(with_era, axis=0) if with_era else None
    first.loss = None
    return first, data, run


def _write_predictions(out: pathlib.Path, found: Predictions) -> None:
    classes = found.classes
    if found.multi_label:
        true = [";".join(c for c, t in zip(classes, row) if t) for row in found.labels]
    else:
        true = [classes[i] for i in found.labels]
    pd.DataFrame(
        {
            "filename": found.filenames,
            "artist": found.artists,
            "true": true,
            "predicted": found.predicted,
            **{f"p_{c}": found.probabilities[:, i] for i, c in enumerate(classes)},
            **({} if found.era_years is None else {"era_estimate": found.era_years}),
        }
    ).to_csv(out / "predictions.csv", index=False)


def evaluate(workdir, split: str = "test", checkpoint: str = "best") -> dict:
    """Evaluates a workdir's checkpoint (or a CV workdir's bag of fold models) on a split; writes
    the artifacts; returns report.json's dict."""
    workdir = pathlib.Path(workdir)
    if checkpointing.is_cv_workdir(workdir):
        found, data, run = bag_predictions(workdir, split, checkpoint)  # calibrated per model
        step, models_in = None, len(checkpointing.fold_workdirs(workdir))
        calibrated = calibration.summary(found.probabilities, found.labels, found.multi_label, None)
    else:
        config, run, state, step = train_state.load_run(workdir, checkpoint)
        data = _data_for(config, run, workdir)
        found, models_in = model_predictions(config, run, state, data, split), 1
        fitted = calibration.load(workdir, step)
        calibrated = calibration.summary(
            found.probabilities, found.labels, found.multi_label, fitted
        )
        # predictions.csv holds what the Predictor gives: temperature-scaled probabilities
        found.probabilities = calibration.apply(found.probabilities, fitted, found.multi_label)
    classes = found.classes
    report = found.report(data.artist_genres)
    if found.era_years is not None:
        report["era"] = found.era_report(ip.artist_periods(data))
    report.update(
        split=split,
        step=None if step is None else int(step),
        checkpoint=checkpoint,
        models=models_in,
        images=len(found.filenames),
        loss=found.loss,
        synthetic=run["synthetic"],
        workdir=str(workdir),
        calibration=calibrated,
    )
    out = workdir / f"eval_{split}"
    out.mkdir(exist_ok=True)
    curves = {"model": calibrated["reliability"]}
    if "reliability_calibrated" in calibrated:
        curves["temperature-scaled"] = calibrated["reliability_calibrated"]
    figures.reliability_diagram(out / "reliability.png", curves)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _write_predictions(out, found)
    suffix = f" [{synthetic.BANNER}]" if run["synthetic"] else ""
    if not found.multi_label:
        predictions = found.probabilities.argmax(-1)
        (out / "per_class_accuracy.md").write_text(per_class_table(report, classes))
        figures.confusion_matrix(
            out / "confusion_matrix.png", report["confusion_matrix"], classes, suffix
        )
        figures.classification_report(out / "classification_report.png", report, classes, suffix)
        figures.misclassified(
            out / "misclassified.png",
            [f.encode() for f in found.filenames],
            found.labels,
            predictions,
            classes,
            run["data_root"],
            suffix,
        )
    if step is not None:
        figures.training_curves(out / "curves.png", workdir, suffix)
    return report


def shortcut_changes(clean_report: dict, probed: dict[str, Predictions]) -> dict:
    """Accuracy and per-class recall on the clean images (from their report) and under each probe,
    with the change from clean (probe minus clean): what each removed part of the paintings
    carried."""
    per_class = clean_report["per_class"]
    accuracy = clean_report["accuracy"]
    recall = {c: m["recall"] for c, m in per_class.items()}
    support = {c: m["support"] for c, m in per_class.items()}
    found = {"clean": {"accuracy": accuracy, "recall": recall, "support": support}, "probes": {}}
    for name, predictions in probed.items():
        report = classification_report(
            predictions.labels, predictions.probabilities.argmax(-1), predictions.classes
        )
        probe_recall = {c: report["per_class"][c]["recall"] for c in recall}
        found["probes"][name] = {
            "accuracy": report["accuracy"],
            "accuracy_change": report["accuracy"] - accuracy,
            "recall": probe_recall,
            "recall_change": {c: probe_recall[c] - recall[c] for c in recall},
        }
    return found


def shortcuts(workdir, split: str = "test", checkpoint: str = "best") -> dict:
    """Evaluates a run's checkpoint on `split` (as `evaluate` does), then on the same images under
    every shortcut probe (preprocess.SHORTCUT_PROBES: border or centre masked, grey level, tiles
    shuffled); adds `shortcuts` (shortcut_changes) to eval_<split>/report.json and draws
    shortcuts.png. Returns the report."""
    workdir = pathlib.Path(workdir)
    if checkpointing.is_cv_workdir(workdir):
        raise UnsupportedRunError(f"{workdir}: shortcut probes take one run's workdir, not a CV's")
    config, run, state, _ = train_state.load_run(workdir, checkpoint)
    if run["multi_label"]:
        raise UnsupportedRunError(f"{workdir}: shortcut probes score single-label runs")
    report = evaluate(workdir, split, checkpoint)
    data = _data_for(config, run, workdir)
    probed = {
        name: model_predictions(config, run, state, data, split, probe=name)
        for name in pp.SHORTCUT_PROBES
    }
    report["shortcuts"] = json.loads(json.dumps(shortcut_changes(report, probed), default=float))
    out = workdir / f"eval_{split}"
    (out / "report.json").write_text(json.dumps(report, indent=2))
    figures.shortcut_changes(out / "shortcuts.png", report["shortcuts"])
    return report


def evaluate_images(
    workdir, images_dir, checkpoint: str = "best", find_painting: bool | None = None
) -> dict:
    """Paintings of (unseen) artists in any Kaggle-layout folder (its own artists.csv + images/):
    for each artist, the share whose top-1 class is one of the genres its row lists, with the
    histogram of the predictions; overall and the macro mean over artists. Each image is
    straightened where the finder finds a painting in it (`find_painting`; default: the run's
    `finder.enabled`), and where the run has a gate the report counts the images it says are not
    paintings. Writes report.json, predictions.csv and a stacked-bar figure into
    workdir/eval_images_<folder name>/."""
    workdir, images_dir = pathlib.Path(workdir), pathlib.Path(images_dir)
    if not (images_dir / "artists.csv").is_file():
        raise catalog.DataError(
            f"{images_dir}: no artists.csv (--images wants a Kaggle-layout folder)"
        )
    found = catalog.read_catalog(images_dir, include_multi_genre=True)
    predictor = inference.Predictor(workdir, checkpoint, find_painting=find_painting)
    outputs = predictor.files_looked_at(list(found.images["path"]))
    probabilities, estimates, readable, errors = outputs[:4]
    artist_of = dict(zip(found.images["path"], found.images["artist"]))
    classes = predictor.classes
    predicted = [classes[i] for i in probabilities.argmax(-1)]
    artists = [artist_of[p] for p in readable]
    report = artist_shares(artists, predicted, found.artist_genres, classes)
    if estimates is not None:
        # the era against the folder's own artists.csv periods
        try:
            periods = catalog.read_active_periods(images_dir / "artists.csv")
        except catalog.DataError as e:
            logging.warning("no era figures for %s: %s", images_dir, e)
        else:
            report["era"] = era.report(estimates, artists, periods) if artists else None
    outlines, distances = outputs.outlines, outputs.distances
    looks = {}
    if predictor.find_painting:
        looks["paintings_found"] = int(sum(o.found for o in outlines))
    if distances is not None:
        looks["gate"] = dict(
            predictor.gate.summary(),
            not_a_painting=int(np.sum(distances > predictor.gate.threshold)),
        )
    report.update(
        **looks,
        images_dir=str(images_dir.absolute()),
        images=len(readable),
        unreadable_files=errors,
        files_without_artist_row=list(found.unmatched_files),
        models=predictor.model_count,
        checkpoint=checkpoint,
        synthetic=predictor.synthetic,
        workdir=str(workdir),
    )
    out = workdir / f"eval_images_{images_dir.name}"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    pd.DataFrame(
        {
            "path": readable,
            "artist": artists,
            "listed_genres": [",".join(found.artist_genres.get(a, ())) for a in artists],
            "predicted": predicted,
            **{f"p_{c}": probabilities[:, i] for i, c in enumerate(classes)},
            **({} if estimates is None else {"era_estimate": estimates}),
            **(
                {}
                if not predictor.find_painting
                else {
                    "painting_found": [o.found for o in outlines],
                    "corners": [
                        " ".join(f"{x:.0f},{y:.0f}" for x, y in o.corners) for o in outlines
                    ],
                }
            ),
            **(
                {}
                if distances is None
                else {
                    "painting_distance": distances,
                    "not_a_painting": distances > predictor.gate.threshold,
                }
            ),
        }
    ).to_csv(out / "predictions.csv", index=False)
    suffix = f" [{synthetic.BANNER}]" if predictor.synthetic else ""
    figures.artist_predictions(out / "artists.png", report, classes, suffix)
    return report
