"""Cross-validation: K folds of a config, each an ordinary training workdir `workdir/fold_<k>/`.

- `by="artist"`: folds of held-out artists (GroupKFold over the artists whose every class another
  artist also has, balanced so that a class holds out at most one artist per fold where it can;
  `folds=0`: one artist per fold). A fold's held-out set is every image of its artists; its
  validation split comes from the training artists, and its best checkpoint scores the held-out
  artists. Classes with a single artist stay in training and are excluded from held-out scoring.
- `by="image"`: K stratified folds of the non-test images (whole duplicate groups); a fold's
  held-out set is its validation split, scored at the final checkpoint (so that choosing the
  best epoch does not look at it). The fixed test split is never trained on: evaluating the CV
  workdir gives the bag of the fold models on it.

Folds of a frozen backbone share one feature cache (`workdir/feature_cache/`): the backbone runs
once per image for the whole CV. Each finished fold writes its held-out predictions
(`heldout.npz`, then `heldout.json`, the mark that it is done); stopping the runner at any point
loses no finished fold, and running it again resumes the unfinished one from its checkpoints. The
report is `workdir/cv_report.json` and `cv_report.md`.

A bag of CVs (`bag_cvs`) averages the held-out probabilities of CVs of other recipes on the same
folds, fold by fold, and reports them as one CV; its fold models are every CV's, so evaluating or
predicting with the bag's workdir averages all of them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib

import numpy as np

from artjax import (
    calibration,
    checkpointing,
    configs,
    evaluation,
    figures,
    train_state,
    trainer,
    transfer,
)
from artjax.data import catalog
from artjax.data import input_pipeline as ip

HELDOUT_NPZ, HELDOUT_JSON = "heldout.npz", "heldout.json"
# Which split of a fold is held out, and at which checkpoint it is scored.
HELDOUT = {"artist": ("test", "best"), "image": ("val", "latest")}


class FoldInterrupted(RuntimeError):
    """A fold's training ended before its last epoch (a hook stopped it): the CV stops there."""


def fold_config(config, by: str, folds: int, fold: int):
    found = config.copy_and_resolve_references()
    found.data.cv.by, found.data.cv.folds, found.data.cv.fold = by, folds, fold
    return found


def _finished(fold_dir: pathlib.Path, config) -> bool:
    history = checkpointing.read_metrics(fold_dir)
    return bool(history) and history[-1]["epoch"] >= config.num_epochs


def _write_record(workdir: pathlib.Path, record: dict) -> None:
    """cv.json, or a check that an existing one describes the same cross-validation."""
    path = workdir / checkpointing.CV_FILE
    record = json.loads(json.dumps(record, default=str))
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            differ = sorted(k for k in record if old.get(k) != record.get(k))
            raise checkpointing.CheckpointMismatchError(
                f"{workdir} holds another cross-validation (differs in {differ}); use another "
                "--workdir, nothing was overwritten"
            )
        return
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


def _save_heldout(fold_dir: pathlib.Path, by: str) -> None:
    split, checkpoint = HELDOUT[by]
    found, data, _ = evaluation.split_predictions(fold_dir, split, checkpoint)
    step = checkpointing.resolve_step(fold_dir, checkpoint)
    fitted = calibration.load(fold_dir, step)  # fitted on the fold's validation split
    np.savez(
        fold_dir / HELDOUT_NPZ,
        labels=found.labels,
        probabilities=found.probabilities,
        calibrated=calibration.apply(found.probabilities, fitted, found.multi_label),
        filenames=np.array(found.filenames),
        artists=np.array(found.artists),
        **({} if found.era_years is None else {"era_years": found.era_years}),
    )
    record = dict(
        split=split,
        checkpoint=checkpoint,
        step=step,
        temperature=None if fitted is None else fitted["temperature"],
        classes=found.classes,
        multi_label=found.multi_label,
        heldout_artists=list(data.heldout_artists),
        single_artist_classes=list(data.single_artist_classes),
        artist_genres={a: list(g) for a, g in data.artist_genres.items()},
    )
    partial = fold_dir / (HELDOUT_JSON + ".partial")
    partial.write_text(json.dumps(record, indent=2))
    partial.rename(fold_dir / HELDOUT_JSON)  # written last: the fold is done


def load_heldout(fold_dir) -> tuple[evaluation.Predictions, dict]:
    fold_dir = pathlib.Path(fold_dir)
    record = json.loads((fold_dir / HELDOUT_JSON).read_text())
    with np.load(fold_dir / HELDOUT_NPZ, allow_pickle=False) as stored:
        found = evaluation.Predictions(
            classes=record["classes"],
            multi_label=record["multi_label"],
            labels=stored["labels"],
            probabilities=stored["probabilities"],
            filenames=stored["filenames"].tolist(),
            artists=stored["artists"].tolist(),
            era_years=stored["era_years"] if "era_years" in stored else None,
        )
        # temperature-scaled by the fold's calibration (CVs from before calibration: as they are)
        scaled = stored["calibrated"] if "calibrated" in stored else found.probabilities
        record["calibrated"] = scaled
    return found, record


def run_cv(config, workdir, folds: int, by: str, extra_hooks=()) -> dict:
    """Trains and scores every fold not yet done, then writes the report; returns it."""
    if by not in HELDOUT:
        raise ValueError(f"--by {by!r} is not one of {tuple(HELDOUT)}")
    workdir = pathlib.Path(workdir)
    base = fold_config(config, by, folds, 0)
    first = ip.prepare_data(base.data, base.seed)  # checks the folds before anything is written
    _, plan = train_state.build_model(base, len(first.classes))
    if transfer.uses_cached_features(base, plan) and not base.freeze.feature_cache:
        base.freeze.feature_cache = str((workdir / "feature_cache").absolute())
    names = [f"fold_{k}" for k in range(first.fold_count)]
    _write_record(workdir, dict(by=by, folds=folds, fold_workdirs=names, config=base.to_dict()))
    for k, name in enumerate(names):
        fold_dir = workdir / name
        if (fold_dir / HELDOUT_JSON).is_file():
            continue
        fold = fold_config(base, by, folds, k)
        trainer.train_and_evaluate(fold, fold_dir, extra_hooks=extra_hooks)
        if not _finished(fold_dir, fold):
            raise FoldInterrupted(f"{fold_dir} stopped before its last epoch; run again to resume")
        _save_heldout(fold_dir, by)
    return write_report(workdir)


def _headline(report: dict) -> dict:
    artists = report["artists"]
    found = {
        "macro_share_listed": artists["macro_share_listed"],
        "overall_share_listed": artists["overall_share_listed"],
    }
    if "mean_average_precision" in report:
        found.update(
            mAP=report["mean_average_precision"], top1_within_listed=report["top1_within_listed"]
        )
    else:
        found.update(
            accuracy=report["accuracy"],
            balanced_accuracy=report["balanced_accuracy"],
            macro_f1=report["macro"]["f1"],
        )
    return found


def bag_cvs(workdir, sources) -> dict:
    """A CV workdir that bags the finished CVs `sources` (by artist or image, same folds; e.g. the
    recipes of one class set): each fold's held-out probabilities are the mean of theirs. Writes
    its report and returns it."""
    workdir = pathlib.Path(workdir)
    if len(sources) < 2:
        raise ValueError(f"a bag of CVs needs two or more CV workdirs, not {sources}")
    records = []
    for source in map(pathlib.Path, sources):
        if not checkpointing.is_cv_workdir(source):
            raise FileNotFoundError(f"{source / checkpointing.CV_FILE}: not a CV workdir")
        record = json.loads((source / checkpointing.CV_FILE).read_text())
        if "bag_of" in record:
            raise checkpointing.CheckpointMismatchError(
                f"{source} is itself a bag of CVs; name its CVs instead"
            )
        unfinished = [
            str(d) for d in checkpointing.fold_workdirs(source) if not (d / HELDOUT_JSON).is_file()
        ]
        if unfinished:
            raise checkpointing.CheckpointMismatchError(
                f"{source}: unfinished folds {unfinished}; run that CV to its end"
            )
        records.append(record)
    for source, record in zip(sources[1:], records[1:]):
        if (record["by"], record["folds"]) != (records[0]["by"], records[0]["folds"]):
            raise checkpointing.CheckpointMismatchError(
                f"{source} holds out by {record['by']} in {record['folds']} folds, {sources[0]} "
                f"by {records[0]['by']} in {records[0]['folds']}: a bag needs the same folds"
            )
    relative = [os.path.relpath(pathlib.Path(s).absolute(), workdir.absolute()) for s in sources]
    record = dict(
        by=records[0]["by"],
        folds=records[0]["folds"],
        bag_of=relative,
        fold_workdirs=[
            os.path.join(source, name)
            for source, r in zip(relative, records)
            for name in r["fold_workdirs"]
        ],
        config=records[0]["config"],
    )
    _heldout_folds(workdir, record)  # the folds must match before anything is written
    _write_record(workdir, record)
    return write_report(workdir)


def _heldout_folds(workdir: pathlib.Path, record: dict) -> list:
    """(name, held-out predictions, fold record) of each fold of a CV; of a bag of CVs, the mean
    of its CVs' probabilities on each fold, which must hold the same paintings and classes."""
    if "bag_of" not in record:
        return [(d.name, *load_heldout(d)) for d in checkpointing.fold_workdirs(workdir)]
    sources = [pathlib.Path(os.path.normpath(workdir / s)) for s in record["bag_of"]]
    cvs = [[load_heldout(d) for d in checkpointing.fold_workdirs(s)] for s in sources]
    if len({len(folds) for folds in cvs}) > 1:
        raise checkpointing.CheckpointMismatchError(
            f"{workdir}: the bagged CVs {record['bag_of']} differ in fold count"
        )
    found = []
    for k, parts in enumerate(zip(*cvs)):
        (first, held), others = parts[0], parts[1:]
        for source, (other, _) in zip(sources[1:], others):
            same = (other.classes, other.filenames) == (first.classes, first.filenames)
            if not same or not np.array_equal(other.labels, first.labels):
                raise checkpointing.CheckpointMismatchError(
                    f"{source}: fold {k} holds other paintings or classes than {sources[0]}: "
                    "a bag needs CVs of one class set and folds"
                )
        estimates = [p.era_years for p, _ in parts if p.era_years is not None]
        mean = dataclasses.replace(
            first,
            probabilities=np.mean([p.probabilities for p, _ in parts], axis=0),
            # the era: the mean of the bagged CVs that have an era head
            era_years=np.mean(estimates, axis=0) if estimates else None,
        )
        held = dict(held, calibrated=np.mean([h["calibrated"] for _, h in parts], axis=0))
        found.append((f"fold_{k}", mean, held))
    return found


def cv_report(workdir) -> dict:
    """Per-fold metrics and their mean ± std; the pooled held-out predictions' metrics (confusion
    matrix and per-class P/R/F1, or mAP and per-genre AP); per held-out artist, the share of their
    paintings given one of their listed genres, with the histogram of the predictions."""
    workdir = pathlib.Path(workdir)
    record = json.loads((workdir / checkpointing.CV_FILE).read_text())
    folds, pooled, calibrated = [], [], []
    periods = None  # artists.csv's active periods, read once where an era head needs them
    for name, found, held in _heldout_folds(workdir, record):
        fold_report = found.report(held["artist_genres"])
        folds.append(
            dict(
                fold=name,
                images=len(found.filenames),
                heldout_artists=held["heldout_artists"],
                **_headline(fold_report),
            )
        )
        if found.era_years is not None:
            periods = periods or _periods(record)
            fold_era = found.era_report(periods)["overall"]
            folds[-1].update(era_mae_to_period=fold_era["mae_to_period"])
        pooled.append(found)
        calibrated.append(held["calibrated"])
    together = evaluation.Predictions(
        classes=pooled[0].classes,
        multi_label=pooled[0].multi_label,
        labels=np.concatenate([p.labels for p in pooled]),
        probabilities=np.concatenate([p.probabilities for p in pooled]),
        filenames=sum((p.filenames for p in pooled), []),
        artists=sum((p.artists for p in pooled), []),
        era_years=None
        if any(p.era_years is None for p in pooled)
        else np.concatenate([p.era_years for p in pooled]),
    )
    pooled_report = together.report(held["artist_genres"])
    per_style = _per_style(pooled_report["artists"]["per_artist"])
    near_miss = _near_misses(record, together, held["artist_genres"])
    scaled = np.concatenate(calibrated)
    heldout_calibration = dict(
        ece=calibration.expected_calibration_error(
            together.probabilities, together.labels, together.multi_label
        ),
        ece_calibrated=calibration.expected_calibration_error(
            scaled, together.labels, together.multi_label
        ),
        nll=calibration.nll(together.probabilities, together.labels, together.multi_label),
        nll_calibrated=calibration.nll(scaled, together.labels, together.multi_label),
        reliability=calibration.reliability(
            together.probabilities, together.labels, together.multi_label
        ),
        reliability_calibrated=calibration.reliability(
            scaled, together.labels, together.multi_label
        ),
    )
    unseen = None
    if record["by"] == "artist" and len(pooled) > 1:
        # A temperature for new painters: fitted on held-out artists. Its held-out figures come
        # from cross-fitting (each fold scaled by the temperature of the other folds' artists).
        temperatures, crossed = calibration.cross_fitted(
            [(p.probabilities, p.labels) for p in pooled], together.multi_label
        )
        crossed = np.concatenate(crossed)
        heldout_calibration.update(
            cross_fitted_temperatures=temperatures,
            ece_cross_fitted=calibration.expected_calibration_error(
                crossed, together.labels, together.multi_label
            ),
            nll_cross_fitted=calibration.nll(crossed, together.labels, together.multi_label),
            reliability_cross_fitted=calibration.reliability(
                crossed, together.labels, together.multi_label
            ),
        )
        unseen = calibration.fit(
            together.probabilities,
            together.labels,
            together.multi_label,
            configs.from_record(record["config"]).calibration.confident_accuracy,
        )
    keys = [k for k in folds[0] if isinstance(folds[0][k], float)]
    summary = {
        k: {
            "mean": float(np.mean([f[k] for f in folds if f[k] is not None])),
            "std": float(np.std([f[k] for f in folds if f[k] is not None])),
        }
        for k in keys
    }
    return dict(
        by=record["by"],
        folds=folds,
        fold_summary=summary,
        pooled=pooled_report,
        heldout_split=held["split"],
        heldout_checkpoint=held["checkpoint"],
        excluded_from_heldout_scoring=held["single_artist_classes"]
        if record["by"] == "artist"
        else [],
        images=len(together.filenames),
        heldout_calibration=heldout_calibration,
        unseen_artists_calibration=unseen,
        classes=together.classes,
        per_style=per_style,
        near_miss=near_miss,
        era=together.era_report(periods) if together.era_years is not None else None,
    )


def _periods(record: dict) -> dict:
    root, _ = ip.resolve_root(configs.from_record(record["config"]).data)
    return catalog.read_active_periods(root / "artists.csv")


def _near_misses(record: dict, together, artist_genres: dict) -> dict | None:
    """`evaluation.near_miss_shares` of the pooled held-out predictions, the styles ordered in
    time by the active periods of the data's artists.csv; None (with a warning) where it has no
    readable `years`."""
    try:
        periods = _periods(record)
        neighbours = catalog.time_neighbours(together.classes, artist_genres, periods)
    except catalog.DataError as e:
        logging.warning("no near-miss rate in the report: %s", e)
        return None
    return evaluation.near_miss_shares(
        together.artists, together.predicted, artist_genres, together.classes, neighbours
    )


def _per_style(per_artist: dict) -> dict:
    """Per listed genre: the mean listed share of its held-out artists, and who they are."""
    found = {}
    for artist, v in per_artist.items():
        for genre in v["listed_genres"]:
            found.setdefault(genre, {})[artist] = v["share_listed"]
    return {
        genre: dict(macro_share_listed=float(np.mean(list(shares.values()))), artists=shares)
        for genre, shares in sorted(found.items())
    }


def _table(header: list[str], rows: list[list]) -> list[str]:
    align = ["---"] + ["---:" if isinstance(v, (int, float)) else "---" for v in rows[0][1:]]
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else ("n/a" if v is None else str(v))
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]


def report_markdown(report: dict) -> str:
    pooled, artists = report["pooled"], report["pooled"]["artists"]
    n_folds, images = len(report["folds"]), report["images"]
    lines = [f"# Cross-validation by {report['by']}: {n_folds} folds, {images} held-out images", ""]
    if report["excluded_from_heldout_scoring"]:
        excluded = ", ".join(report["excluded_from_heldout_scoring"])
        lines += [f"Excluded from held-out scoring (one artist, kept in training): {excluded}.", ""]
    summary = report["fold_summary"]
    lines += _table(
        ["metric (per fold)", "mean", "std"], [[k, v["mean"], v["std"]] for k, v in summary.items()]
    )
    if artists["overall_share_listed"] is not None:
        lines += [
            "",
            f"Pooled: listed genre for {artists['overall_share_listed']:.4f} of the held-out "
            f"paintings; macro mean over artists {artists['macro_share_listed']:.4f}.",
        ]
    near = report.get("near_miss")
    if near and near["macro_near_miss"] is not None:
        lines += [
            "",
            f"Near misses (the top-1 is not listed but a neighbour in time of a listed genre): "
            f"macro over artists {near['macro_near_miss']:.4f}, of the paintings "
            f"{near['overall_near_miss']:.4f}.",
        ]
    era_found = report.get("era")
    if era_found:
        overall, macro = era_found["overall"], era_found["macro_over_artists"]
        lines += [
            "",
            f"Era (the era head against each held-out artist's active period): mean distance "
            f"{overall['mae_to_period']:.1f} years (macro over artists "
            f"{macro['mae_to_period']:.1f}), to the period's middle "
            f"{overall['mae_to_middle']:.1f}; "
            f"within 25 years of the period: {overall['share_within_25']:.4f} of the paintings "
            f"(macro {macro['share_within_25']:.4f}).",
        ]
    if report.get("per_style"):
        rows = [
            [genre, len(v["artists"]), v["macro_share_listed"]]
            for genre, v in report["per_style"].items()
        ]
        lines += ["", *_table(["listed genre", "held-out artists", "macro listed share"], rows)]
    held = report.get("heldout_calibration")
    if held:
        lines += [
            "",
            f"Calibration on the held-out paintings: ECE {held['ece']:.4f} "
            f"(temperature-scaled on each fold's validation split: {held['ece_calibrated']:.4f}), "
            f"NLL {held['nll']:.4f} ({held['nll_calibrated']:.4f}).",
        ]
    if held and "ece_cross_fitted" in held:
        temperatures = ", ".join(f"{t:.2f}" for t in held["cross_fitted_temperatures"])
        lines += [
            "",
            "With a temperature fitted on the other folds' held-out artists (cross-fitted; "
            f"T = {temperatures}): ECE {held['ece_cross_fitted']:.4f}, "
            f"NLL {held['nll_cross_fitted']:.4f}. Fitted on every fold's held-out artists "
            f"(`{calibration.UNSEEN_ARTISTS_FILE}`, for `calibration.from_cv`): "
            f"T = {report['unseen_artists_calibration']['temperature']:.3f}, uncertain below a "
            f"top probability of {report['unseen_artists_calibration']['uncertain_below']:.3f}.",
        ]
    if "accuracy" in pooled:
        lines += [
            "",
            f"Pooled accuracy {pooled['accuracy']:.4f}, "
            f"balanced {pooled['balanced_accuracy']:.4f}, macro F1 {pooled['macro']['f1']:.4f}.",
            "",
        ]
        # Classes without held-out images (kept in training) are left out of this table.
        rows = [
            [c, m["precision"], m["recall"], m["f1"], m["support"]]
            for c, m in pooled["per_class"].items()
            if m["support"]
        ]
        lines += _table(["class", "precision", "recall", "f1", "support"], rows)
    else:
        lines += [
            "",
            f"Pooled mAP {pooled['mean_average_precision']:.4f}, top-1 within listed genres "
            f"{pooled['top1_within_listed']:.4f}.",
            "",
        ]
        rows = [[c, m["average_precision"], m["support"]] for c, m in pooled["per_class"].items()]
        lines += _table(["genre", "AP", "support"], rows)
    near_misses = (near or {}).get("per_artist", {})
    eras = (era_found or {}).get("per_artist", {})
    era_cell = lambda a: (
        f"{eras[a]['period'][0]}-{eras[a]['period'][1]}: {eras[a]['median_estimate']:.0f}"
    )
    rows = [
        [
            a,
            ", ".join(v["listed_genres"]),
            v["images"],
            v["share_listed"],
            near_misses.get(a),
            ", ".join(f"{c} {n}" for c, n in list(v["predicted"].items())[:3]),
            *([era_cell(a) if a in eras else None] if eras else []),
        ]
        for a, v in artists["per_artist"].items()
    ]
    if rows:
        header = ["held-out artist", "listed genres", "images", "listed share", "near miss"]
        header += ["predicted (top 3)", *(["period: median estimate"] if eras else [])]
        lines += ["", *_table(header, rows)]
    if artists["artists_not_scored"]:
        not_scored = ", ".join(artists["artists_not_scored"])
        lines += ["", f"Not scored (no listed genre among the classes): {not_scored}."]
    return "\n".join(lines) + "\n"


def write_report(workdir) -> dict:
    workdir = pathlib.Path(workdir)
    report = cv_report(workdir)
    (workdir / "cv_report.json").write_text(json.dumps(report, indent=2, default=float))
    (workdir / "cv_report.md").write_text(report_markdown(report))
    held = report["heldout_calibration"]
    curves = {"model": held["reliability"], "temperature-scaled": held["reliability_calibrated"]}
    if report["unseen_artists_calibration"]:
        curves["temperature of other folds' artists"] = held["reliability_cross_fitted"]
        calibration.save_unseen_artists(
            workdir, report["classes"], report["unseen_artists_calibration"]
        )
    figures.reliability_diagram(workdir / "reliability.png", curves, " (held-out artists)")
    return report
