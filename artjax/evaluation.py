"""Evaluation: the masked pass over a split's batches, sklearn's metrics, and a workdir's report.

`evaluate(workdir, split, checkpoint)` writes `workdir/eval_<split>/`: report.json (accuracy,
balanced accuracy, macro and weighted P/R/F1, per-class P/R/F1/support, confusion matrix; all from
sklearn), predictions.csv, the confusion matrix, a classification-report heatmap, train/val curves,
a per-class accuracy table and a grid of misclassified images (the study's figures,
`artjax.figures`).
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pandas as pd
from flax import jax_utils
from sklearn import metrics as skm

from artjax import checkpointing, figures, steps, train_state
from artjax.data import input_pipeline as ip
from artjax.data import synthetic


def evaluate_split(p_eval_step, state, batches, split: str) -> tuple[dict, dict]:
    """Metrics of one pass over a split's padded batches (from the step's on-device sums), and the
    labels, logits and filenames of its real (unpadded) images."""
    sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    found = {"labels": [], "logits": [], "filenames": []}
    for batch in batches:
        filenames = batch.pop("filename").reshape(-1)
        batch_logits, batch_sums = p_eval_step(state, batch)
        sums = {k: sums[k] + float(batch_sums[k][0]) for k in sums}
        mask = batch["mask"].reshape(-1) == 1
        found["labels"].append(batch["label"].reshape(-1)[mask])
        found["logits"].append(np.asarray(batch_logits, np.float32).reshape(mask.size, -1)[mask])
        found["filenames"].append(filenames[mask])
    count = max(sums["count"], 1.0)
    metrics = {f"{split}_loss": sums["loss"] / count, f"{split}_accuracy": sums["correct"] / count}
    return metrics, {k: np.concatenate(v) for k, v in found.items()}


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


def evaluate(workdir, split: str = "test", checkpoint: str = "best") -> dict:
    """Evaluates a workdir's checkpoint on a split; writes the artifacts; returns report.json's
    dict."""
    workdir = pathlib.Path(workdir)
    config, run, state, step = train_state.load_run(workdir, checkpoint)
    data = ip.prepare_data(config.data, config.seed)
    if list(data.classes) != run["classes"]:
        raise checkpointing.CheckpointMismatchError(
            f"{workdir}: data now gives classes {list(data.classes)}, "
            f"the checkpoint has {run['classes']}"
        )
    num_devices = jax.local_device_count()
    p_eval_step = jax.pmap(steps.eval_step, axis_name=steps.AXIS)
    batches = ip.eval_dataset(data, split, config, num_devices).as_numpy_iterator()
    step_metrics, found = evaluate_split(p_eval_step, jax_utils.replicate(state), batches, split)
    predictions = found["logits"].argmax(-1)
    classes = run["classes"]
    report = classification_report(found["labels"], predictions, classes)
    report.update(
        split=split,
        step=int(step),
        checkpoint=checkpoint,
        images=int(len(predictions)),
        loss=step_metrics[f"{split}_loss"],
        synthetic=run["synthetic"],
        workdir=str(workdir),
    )
    out = workdir / f"eval_{split}"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    probs = np.asarray(jax.nn.softmax(found["logits"]))
    pd.DataFrame(
        {
            "filename": [f.decode() for f in found["filenames"]],
            "true": [classes[i] for i in found["labels"]],
            "predicted": [classes[i] for i in predictions],
            **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)},
        }
    ).to_csv(out / "predictions.csv", index=False)
    (out / "per_class_accuracy.md").write_text(per_class_table(report, classes))
    suffix = f" [{synthetic.BANNER}]" if run["synthetic"] else ""
    figures.confusion_matrix(
        out / "confusion_matrix.png", report["confusion_matrix"], classes, suffix
    )
    figures.classification_report(out / "classification_report.png", report, classes, suffix)
    figures.training_curves(out / "curves.png", workdir, suffix)
    figures.misclassified(
        out / "misclassified.png",
        found["filenames"],
        found["labels"],
        predictions,
        classes,
        run["data_root"],
        suffix,
    )
    return report
