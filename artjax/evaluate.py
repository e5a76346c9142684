"""Evaluation from a workdir alone: `python -m artjax.evaluate --workdir checkpoints/<run>
[--split test|val] [--checkpoint best|latest|STEP]`.

Writes into the workdir (`eval_<split>/`): report.json (accuracy, balanced accuracy, macro and weighted
P/R/F1, per-class P/R/F1/support, confusion matrix; all from sklearn), predictions.csv, the confusion
matrix, a classification-report heatmap, train/val curves, a per-class accuracy table and a grid of
misclassified images — the study's figures.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX start threads (see artjax.host_memory)
    from artjax import host_memory

    host_memory.keep_freed_memory()

import json
import pathlib

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from flax import jax_utils  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from artjax import catalog, checkpointing, configs, models, steps, synthetic  # noqa: E402
from artjax import input_pipeline as ip  # noqa: E402
from artjax import train  # noqa: E402

def load_run(workdir, checkpoint: str = "best"):
    """(config, run record, state, step) of a workdir's checkpoint; state is unreplicated."""
    run = checkpointing.read_run(workdir)
    config = configs.from_record(run["config"])
    model = models.create_model(config.model, len(run["classes"]), axis_name=steps.AXIS)
    ckpt = checkpointing.Checkpoints(workdir, config.keep_checkpoints, config.best_metric)
    step = ckpt.resolve(checkpoint)
    like = train.create_train_state(config, model, steps_per_epoch=1)  # structure only: init is not loaded
    state = ckpt.restore(step, like)
    ckpt.close()
    return config, run, state, step


def classification_report(labels, predictions, classes) -> dict:
    idx = list(range(len(classes)))
    p, r, f, s = skm.precision_recall_fscore_support(labels, predictions, labels=idx, zero_division=0)
    report = {
        "accuracy": skm.accuracy_score(labels, predictions),
        "balanced_accuracy": skm.balanced_accuracy_score(labels, predictions),
        "confusion_matrix": skm.confusion_matrix(labels, predictions, labels=idx).tolist(),
        "per_class": {c: {"precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
                      for i, c in enumerate(classes)},
    }
    for average in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(labels, predictions, labels=idx, average=average,
                                                             zero_division=0)
        report[average] = {"precision": ap, "recall": ar, "f1": af}
    return json.loads(json.dumps(report, default=float))


def _figures(out: pathlib.Path, report, classes, workdir, found, predictions, data_root, title_suffix):
    cm = np.array(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right"), ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"Confusion matrix{title_suffix}", fontsize=9)
    fig.tight_layout(), fig.savefig(out / "confusion_matrix.png", dpi=100), plt.close(fig)

    table = np.array([[report["per_class"][c][k] for k in ("precision", "recall", "f1")] for c in classes])
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(classes) + 1.5))
    ax.imshow(table, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center")
    ax.set_xticks(range(3), ["precision", "recall", "f1"]), ax.set_yticks(range(len(classes)), classes)
    ax.set_title(f"Classification report{title_suffix}", fontsize=9)
    fig.tight_layout(), fig.savefig(out / "classification_report.png", dpi=100), plt.close(fig)

    history = checkpointing.read_metrics(workdir)
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        epochs = [h["epoch"] for h in history]
        for ax, kind in zip(axes, ("accuracy", "loss")):
            ax.plot(epochs, [h[f"train_{kind}"] for h in history], label="train")
            ax.plot(epochs, [h[f"val_{kind}"] for h in history], label="val")
            ax.set_xlabel("epoch"), ax.set_title(kind + title_suffix, fontsize=9), ax.legend()
        fig.tight_layout(), fig.savefig(out / "curves.png", dpi=100), plt.close(fig)

    wrong = np.nonzero(predictions != found["labels"])[0][:24]
    if len(wrong):
        image_dir, flat = catalog.find_image_dir(pathlib.Path(data_root))
        cols = 6
        rows = -(-len(wrong) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, i in zip(axes.ravel(), wrong):
            name = found["filenames"][i].decode()
            path = image_dir / (pathlib.Path(name).name if flat else name)
            if path.is_file():
                ax.imshow(Image.open(path).convert("RGB"))
            ax.set_title(f"true: {classes[found['labels'][i]]}\npred: {classes[predictions[i]]}", fontsize=7)
        fig.suptitle(f"Misclassified{title_suffix}", fontsize=9)
        fig.tight_layout(), fig.savefig(out / "misclassified.png", dpi=100), plt.close(fig)


def evaluate(workdir, split: str = "test", checkpoint: str = "best") -> dict:
    """Evaluates a workdir's checkpoint on a split; writes the artifacts; returns report.json's dict."""
    workdir = pathlib.Path(workdir)
    config, run, state, step = load_run(workdir, checkpoint)
    data = ip.prepare_data(config.data, config.seed)
    if list(data.classes) != run["classes"]:
        raise checkpointing.CheckpointMismatchError(
            f"{workdir}: data now gives classes {list(data.classes)}, the checkpoint has {run['classes']}")
    num_devices = jax.local_device_count()
    p_eval_step = jax.pmap(steps.eval_step, axis_name=steps.AXIS)
    batches = ip.eval_dataset(data, split, config, num_devices).as_numpy_iterator()
    step_metrics, found = train.evaluate_split(p_eval_step, jax_utils.replicate(state), batches, split)
    predictions = found["logits"].argmax(-1)
    classes = run["classes"]
    report = classification_report(found["labels"], predictions, classes)
    report.update(split=split, step=int(step), checkpoint=checkpoint, images=int(len(predictions)),
                  loss=step_metrics[f"{split}_loss"], synthetic=run["synthetic"], workdir=str(workdir))
    out = workdir / f"eval_{split}"
    out.mkdir(exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    probs = np.asarray(jax.nn.softmax(found["logits"]))
    pd.DataFrame({"filename": [f.decode() for f in found["filenames"]],
                  "true": [classes[i] for i in found["labels"]], "predicted": [classes[i] for i in predictions],
                  **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)}}).to_csv(out / "predictions.csv", index=False)
    per_class = pd.DataFrame({"class": classes,
                              "accuracy (recall)": [report["per_class"][c]["recall"] for c in classes],
                              "support": [report["per_class"][c]["support"] for c in classes]})
    lines = ["| class | accuracy (recall) | support |", "|---|---:|---:|"]
    lines += [f"| {r['class']} | {r['accuracy (recall)']:.3f} | {r['support']} |" for _, r in per_class.iterrows()]
    (out / "per_class_accuracy.md").write_text("\n".join(lines) + "\n")
    suffix = f" [{synthetic.BANNER}]" if run["synthetic"] else ""
    _figures(out, report, classes, workdir, found, predictions, run["data_root"], suffix)
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    args = flags.FLAGS
    report = evaluate(args.workdir, args.split, args.checkpoint)
    if report["synthetic"]:
        print(synthetic.BANNER)
    print(f"{report['split']} split, step {report['step']} ({report['checkpoint']}), {report['images']} images")
    print(f"accuracy {report['accuracy']:.4f}  balanced accuracy {report['balanced_accuracy']:.4f}  "
          f"macro F1 {report['macro']['f1']:.4f}  weighted F1 {report['weighted']['f1']:.4f}")
    for c, m in report["per_class"].items():
        print(f"  {c:<24} precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}  "
              f"support {m['support']}")
    print(f"artifacts in {pathlib.Path(args.workdir) / ('eval_' + report['split'])}")


def define_checkpoint_flags():
    """--workdir and --checkpoint, shared with artjax.predict (defined by whichever runs as __main__)."""
    flags.DEFINE_string("workdir", None, "Training workdir.")
    flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
    flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
    define_checkpoint_flags()
    flags.DEFINE_enum("split", "test", list(ip.SPLITS), "Split to evaluate.")
    app.run(main)
