"""Benchmarks (commands, not timed tests). Record their output in BENCHMARKS.md.

  python -m artjax.bench pipeline --config experiments/cnn.py
  --config.data.root=../shared/data/best_artworks

pipeline: images/s, in one run on the same training files, of
  decode+resize  tf.data decode and resize only (no augmentation, no cache)
  full, cold     the training pipeline's first pass (decode, resize, cache, augment, normalize,
  batch) full, warm     the same pipeline once its cache is filled (every later epoch)
  keras IDG      Keras's ImageDataGenerator.flow_from_dataframe with the same augmentation

  python -m artjax.bench train [--image_size 200] [--steps 10] [--rounds 1] [--models cnn,resnet50]

train: train-step images/s (median step time after two warm-up steps) on synthetic batches for the
CNN (batch 32) and ResNet50 (batch 16, the Keras v1 layout), artjax's pmap'd step with each
convolution implementation and Keras (TF backend) with the same architectures and Adam, in one run,
each measurement in a fresh process (--rounds alternates them).

  python -m artjax.bench accelerator \
      [--config experiments/resnet50_scratch.py --config.data.root=...] [--nopipeline]

accelerator: ResNet50 (v1.5) train steps at 224 and 200, bfloat16 and float32, on synthetic batches
already on the devices and, with --config, through the real tf.data pipeline (prefetched to the
devices): images/s, step time, the model FLOPs utilisation they imply (XLA's FLOP count of the step
against the device's bf16 dense peak) and peak device memory. Sized to finish in a few minutes on
one GPU. On synthetic batches alone (no --config, or --nopipeline) it needs JAX but not
TensorFlow, so it runs on a JAX-only accelerator image.

  python -m artjax.bench backbone --config experiments/lite0_style.py:all \
      --config.data.root=../shared/data/best_artworks [--backbones 0,1,2] \
      [--crop_sets whole,crops50,crops25] [--images 256]

  python -m artjax.bench finetune --config experiments/style.py:six [--depths head,...,whole]

finetune: train-step images/s of each trainable share (transfer.DEPTHS) of the config's model,
with its era head and frozen layers as `artjax.train` runs them, on synthetic batches of its
batch size and image size (random weights), one after another in one process.

  python -m artjax.bench wikiart_prepare [--images 2000] [--pixels 3000000] [--workers 0] \
      [--group_sizes 100000] [--output DIR]

wikiart_prepare: a generated Painter by Numbers download (painting-like JPEGs at --pixels) prepared
by the WikiArt builder from scratch: images/s, cores busy and the peak RSS of the whole process
tree; the decoding pass alone; then the near-duplicate grouping (all pairs) alone on random
signatures at --group_sizes. --output DIR keeps (and reuses) the generated download.

  python -m artjax.bench photos --workdir checkpoints/<cv or run> [--scenes wall,close] \
      [--per_artist 12] [--config experiments/lite0_style.py]
  python -m artjax.bench photos --finder_only --images 50 --config experiments/lite0_style.py \
      --config.data.root=../shared/data/best_artworks

photos: held-out paintings clean, photographed by the simulator and photographed then straightened,
side by side (listed share, top-3, the finder's IoU and corner error, the gate's flags, images
that are not paintings, and the time the finder adds): artjax.photo_benchmark.

  python -m artjax.bench compile --config experiments/efficientnet_lite0_finetune.py:synthetic \
      --config.data.image_size=32 --xla_flags="" --xla_flags="--xla_cpu_use_fusion_emitters=false"

compile: the plain pmap'd train step of the config (no era head), in a fresh process per
--xla_flags set (added to XLA_FLAGS; JAX's compilation cache off): the CPU seconds to trace and
lower it, to compile it, and its median step time.

backbone: the frozen backbone's pass per painting, as a feature cache computes it (decode and resize
of every view, the forward pass), for each EfficientNet-Lite version (at its own resolution, its
ported weights in checkpoints/imagenet/) and crop set, side by side in one process on the same
paintings.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import os
import pathlib
import shutil
import tempfile

import jax
from absl import app, flags
from ml_collections import config_flags

from artjax import benchmarks, cli, configs, host_memory

SUBCOMMANDS = (
    "pipeline",
    "train",
    "accelerator",
    "export",
    "serve",
    "backbone",
    "finetune",
    "wikiart_prepare",
    "photos",
    "compile",
)


def main(argv):
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        raise app.UsageError(
            f"usage: python -m artjax.bench {'|'.join(SUBCOMMANDS)} [--config ...]"
        )
    cli.setup_process()
    # applied before the imports when run as a script; reports it
    kept = host_memory.keep_freed_memory()
    F = flags.FLAGS
    if argv[1] == "accelerator":
        config = F.config or configs.load("experiments/resnet50_scratch.py")
        rows = benchmarks.bench_accelerator(
            config,
            [int(s) for s in F.sizes],
            F.dtypes,
            F.batch_per_device,
            F.steps,
            with_pipeline=(F.config is not None) if F.pipeline is None else F.pipeline,
        )
        d = jax.local_devices()[0]
        print(
            f"devices: {jax.local_device_count()} x {d.device_kind} ({jax.default_backend()}); "
            f"batch {F.batch_per_device} per device; {F.steps} timed steps"
        )
        for r in rows:
            mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "  n/a"
            mem = (
                f"{r['peak_memory_gib']:6.1f} GiB" if r["peak_memory_gib"] is not None else "   n/a"
            )
            print(
                f"{r['input']:<10} {r['size']:>4} {r['dtype']:<9} "
                f"{r['images_per_second']:>9.1f} img/s "
                f"{r['step_ms']:>8.1f} ms/step  MFU {mfu}  peak memory {mem}"
            )
        return
    if argv[1] == "export":
        return _bench_export(F)
    if argv[1] == "serve":
        return _bench_serve(F)
    if argv[1] == "backbone":
        return _bench_backbone(F)
    if argv[1] == "finetune":
        return _bench_finetune(F)
    if argv[1] == "wikiart_prepare":
        return _bench_wikiart_prepare(F)
    if argv[1] == "photos":
        return _bench_photos(F)
    if argv[1] == "compile":
        return _bench_compile(F)
    if argv[1] == "train":
        print(
            f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores, "
            f"JAX backend {jax.default_backend()} x{jax.local_device_count()}; "
            f"image size {F.image_size}, median of {F.steps} timed steps, "
            f"median of {F.rounds} round(s); "
            f"freed host memory kept (both frameworks): {kept}"
        )
        rows = benchmarks.bench_train(F.models, F.image_size, F.steps, F.rounds)
        keras_rate = {name: rate for name, who, rate in rows if who.startswith("keras")}
        for name, who, rate in rows:
            print(f"{name:<9}{who:<32}{rate:>8.2f} img/s  ({rate / keras_rate[name]:4.2f}x Keras)")
        return
    if F.config is None:
        raise app.UsageError("pipeline needs --config")
    config = F.config
    rates = benchmarks.bench_pipeline(config, F.images)
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores; "
        f"image size {config.data.image_size}, "
        f"batch {config.batch_size}, {F.images} images per measurement"
    )
    keras = rates["keras ImageDataGenerator"]
    for name, rate in rates.items():
        print(
            f"{name:<28}{rate:>9.1f} img/s  ({rate / keras:5.1f}x Keras, "
            f"{rate / rates['decode+resize']:4.2f}x decode-only)"
        )


def _bench_photos(F):
    if not F.workdir and not F.finder_only:
        raise app.UsageError("photos needs --workdir (a leave-artists-out CV, or a trained run)")
    import json

    from artjax import photo_benchmark

    config = F.config or configs.base_config()  # the simulator's and the finder's settings
    if F.finder_only:
        print(f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores")
        for scene, row in photo_benchmark.finder_timing(config, F.scenes, F.images, F.seed).items():
            print(
                f"{scene}: {row['photos']} photos of {config.photos.width}x{config.photos.height}: "
                f"decode, find and straighten median {row['median_ms']:.1f} ms, p90 "
                f"{row['p90_ms']:.1f} ms (outline IoU median {row['iou_median']:.3f})"
            )
        return
    report = photo_benchmark.run(F.workdir, config, F.scenes, F.per_artist, F.seed)
    print(f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores")
    print(photo_benchmark.markdown(report))
    out = pathlib.Path(F.workdir) / "bench_photos.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report in {out}")


def _bench_backbone(F):
    if F.config is None:
        raise app.UsageError("backbone needs --config (a frozen EfficientNet-Lite config)")
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores, JAX backend "
        f"{jax.default_backend()} x{jax.local_device_count()}; {F.images} paintings each"
    )
    for version in (int(v) for v in F.backbones):
        for crop_set in F.crop_sets:
            config = benchmarks.backbone_config(F.config, version, crop_set)
            found = benchmarks.bench_backbone(config, F.images)
            print(
                f"Lite{version} {config.data.image_size}px {crop_set:<8} "
                f"{found['views']} view(s) {found['features']} features: "
                f"{found['ms_per_painting']:7.1f} ms per painting "
                f"({found['paintings']} paintings)",
                flush=True,
            )


def _bench_finetune(F):
    if F.config is None:
        raise app.UsageError("finetune needs --config (e.g. experiments/style.py:six)")
    c = F.config
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores, JAX backend "
        f"{jax.default_backend()} x{jax.local_device_count()}; {c.model.name} "
        f"{c.data.image_size}px, batch {c.batch_size}, era head {bool(c.model.era_head)}, "
        f"BatchNorm {c.freeze.batch_norm}; median of {F.steps} timed steps",
        flush=True,
    )
    for r in benchmarks.bench_finetune(c, F.depths, F.steps):
        print(
            f"{r['depth']:<9} {r['trainable_layers']:>4} trainable layers "
            f"{r['images_per_second']:8.1f} img/s  {r['step_s']:7.2f} s/step  "
            f"(compile and all: {r['total_s']:.0f} s)",
            flush=True,
        )


def _bench_compile(F):
    if F.config is None:
        raise app.UsageError("compile needs --config (e.g. experiments/cnn.py:synthetic)")
    c = F.config
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores; {c.model.name} "
        f"{c.data.image_size}px, batch {c.batch_size}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} plus each row's; "
        f"median of {F.steps} timed steps",
        flush=True,
    )
    for r in benchmarks.bench_compile(c, F.xla_flags or [""], F.steps):
        print(
            f"trace {r['trace_cpu_s']:6.1f} s  compile {r['compile_cpu_s']:6.1f} s CPU  "
            f"step {1000 * r['step_s']:8.1f} ms  {r['flags'] or '(no flags added)'}",
            flush=True,
        )


def _bench_wikiart_prepare(F):
    from artjax.data.wikiart import scale

    workdir = pathlib.Path(F.output or tempfile.mkdtemp(prefix="wikiart_bench_"))
    root, prepared = workdir / "painter_by_numbers", workdir / "prepared"
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores; "
        f"{F.images} generated paintings of {F.pixels / 1e6:.1f} MP under {workdir}",
        flush=True,
    )
    written = scale.generate(root, F.images, F.pixels, F.workers)
    shutil.rmtree(prepared, ignore_errors=True)  # prepared from scratch every time
    found = scale.measure_prepare(root, prepared, F.workers)
    print(
        f"prepare: {found['images']} images ({written / 1e9:.2f} GB of JPEG) in "
        f"{found['seconds']:.0f} s: {found['images_per_second']:.1f} images/s, "
        f"{found['cores_busy']:.2f} cores busy on average; peak RSS of the process tree "
        f"{found['peak_tree_rss_gib']:.2f} GiB",
        flush=True,
    )
    found = scale.measure_decode(root, F.workers)
    print(
        f"the decoding pass alone: {found['images_per_second']:.1f} images/s, "
        f"{found['cores_busy']:.2f} cores busy on average",
        flush=True,
    )
    if not F.output:
        shutil.rmtree(workdir)  # gigabytes of generated paintings
    for n in F.group_sizes:
        seconds = scale.time_duplicate_groups(int(n))
        print(f"near-duplicate grouping of {int(n)} random signatures: {seconds:.1f} s", flush=True)


def _bench_export(F):
    if not F.workdir:
        raise app.UsageError("export needs --workdir")
    paintings = F.paintings or benchmarks.run_data_root(F.workdir)
    with tempfile.TemporaryDirectory() as scratch:
        rows, export_seconds, dimensions = benchmarks.bench_export(
            F.workdir, paintings, F.images, F.batch, F.rounds, F.output or scratch
        )
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores; {F.workdir}: "
        f"{F.images} real paintings of {paintings}, batch 1 and {F.batch}, best of {F.rounds} "
        f"round(s); export took {', '.join(f'{k} {v:.0f} s' for k, v in export_seconds.items())}"
    )
    print(
        f"{'path':<38}{'ready s':>8}{'b=1 /s':>9}{f'b={F.batch} /s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}  max |p - Predictor|"
    )
    for r in rows:
        print(
            f"{r['path']:<38}{r['ready_seconds']:>8.1f}{r['batch1_per_second']:>9.2f}"
            f"{r['batched_per_second']:>9.2f}{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
            f"  {r['max_abs_difference']:.1e}"
        )
    print(f"nearest neighbours by brute force, {dimensions}-dimensional embeddings, k=8:")
    for r in benchmarks.bench_nearest(dimensions, [int(s) for s in F.index_sizes]):
        print(f"  {r['size']:>9,} paintings: {r['ms']:8.2f} ms per query, {r['gib']:6.2f} GiB")


def _bench_serve(F):
    if not F.exports or not F.paintings:
        raise app.UsageError("serve needs --exports name=DIR,... and --paintings")
    exports = dict(item.split("=", 1) for item in F.exports)
    rows = benchmarks.bench_serve(
        exports, F.paintings, [int(c) for c in F.concurrency], F.requests, F.batch
    )
    print(
        f"machine: {benchmarks.cpu_description()}, {os.cpu_count()} CPU cores; {F.requests} "
        f"POST /v1/predict per row (real paintings of {F.paintings}), server and load generator "
        "on this machine"
    )
    header = f"{'model':<8}{'batching':<24}{'clients':>8}{'paintings/s':>13}"
    print(f"{header}{'p50 ms':>9}{'p99 ms':>9}")
    for r in rows:
        if "concurrency" not in r:
            print(f"{r['model']:<8}{r['batching']:<24}{'':>8}{r['per_second']:>13.2f}")
            continue
        print(
            f"{r['model']:<8}{r['batching']:<24}{r['concurrency']:>8}{r['per_second']:>13.2f}"
            f"{r['p50_ms']:>9.0f}{r['p99_ms']:>9.0f}"
            + (f"  {r['failures']} failed" if r["failures"] else "")
        )
    started = {
        (r["model"], r["batching"]): (r["ready_seconds"], r["warm_seconds"])
        for r in rows
        if "concurrency" in r
    }
    print(
        "start to /readyz (to every batch size warm): "
        + ", ".join(f"{m} {b}: {r:.1f} s ({w:.1f} s)" for (m, b), (r, w) in started.items())
    )


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_integer("images", 1600, "Images per measurement (pipeline, backbone).")
    flags.DEFINE_list("backbones", ["0", "1", "2"], "EfficientNet-Lite versions (backbone).")
    flags.DEFINE_list("crop_sets", ["whole", "crops50", "crops25"], "Crop sets (backbone).")
    flags.DEFINE_list(
        "depths", ["head", "top_conv", "last20", "last50", "whole"], "Trainable shares (finetune)."
    )
    flags.DEFINE_integer("image_size", 200, "Image size (train).")
    flags.DEFINE_integer("pixels", 3_000_000, "Pixels per generated painting (wikiart_prepare).")
    flags.DEFINE_integer("workers", 0, "Decoding processes; 0: every core (wikiart_prepare).")
    flags.DEFINE_list(
        "group_sizes", ["100000"], "Paintings to time near-duplicate grouping at (wikiart_prepare)."
    )
    flags.DEFINE_integer(
        "steps",
        10,
        "Timed steps per measurement (median), after two warm-up steps (train, accelerator).",
    )
    flags.DEFINE_list("models", ["cnn", "resnet50"], "Models to time (train).")
    flags.DEFINE_multi_string(
        "xla_flags", None, "XLA flags added to XLA_FLAGS, one set per use, a row each (compile)."
    )
    flags.DEFINE_integer(
        "rounds", 1, "Rounds of measurements, each in a fresh process; medians reported (train)."
    )
    flags.DEFINE_list("sizes", ["224", "200"], "Image sizes (accelerator).")
    flags.DEFINE_list("dtypes", ["bfloat16", "float32"], "Compute dtypes (accelerator).")
    flags.DEFINE_string("workdir", None, "A trained run or CV workdir to export and time (export).")
    flags.DEFINE_string(
        "paintings",
        None,
        "A Kaggle-layout folder of paintings to time on (export; default: the run's data.root).",
    )
    flags.DEFINE_integer("batch", 32, "The batch size besides 1 (export); max_batch (serve).")
    flags.DEFINE_list("exports", [], "name=EXPORT_DIR,... to serve and load (serve).")
    flags.DEFINE_list("concurrency", ["1", "8", "32"], "Concurrent clients (serve).")
    flags.DEFINE_integer("requests", 64, "Requests per measurement (serve).")
    flags.DEFINE_string("output", None, "Keep the exports here (export; default: a temp dir).")
    flags.DEFINE_list(
        "index_sizes", ["10000", "100000", "500000"], "Index sizes for nearest neighbours (export)."
    )
    flags.DEFINE_integer("batch_per_device", 256, "Per-device batch (accelerator).")
    flags.DEFINE_list("scenes", ["wall", "close"], "Simulator scenes, photos.scenes (photos).")
    flags.DEFINE_integer("per_artist", 12, "Held-out paintings per artist; 0: all (photos).")
    flags.DEFINE_integer("seed", 0, "Seed of the paintings drawn and their photos (photos).")
    flags.DEFINE_bool(
        "finder_only",
        False,
        "Time the finder alone on --images photos of --config's data.root, no model (photos).",
    )
    flags.DEFINE_bool(
        "pipeline",
        None,
        "Also feed the steps through the config's tf.data pipeline (accelerator; default: when "
        "--config is given).",
    )
    app.run(main, flags_parser=configs.parse_flags)
