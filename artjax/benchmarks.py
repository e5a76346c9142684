"""Benchmarks behind `python -m artjax.bench` (commands, not timed tests; their output goes into
BENCHMARKS.md with the machine and the date): the input pipeline against Keras's
ImageDataGenerator, train steps against Keras on CPU, and an accelerator's throughput, MFU and
memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import multiprocessing
import os
import pathlib
import platform
import time
import unittest.mock
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import jax_utils

from artjax import configs, models, steps, train_state

# The data modules (TensorFlow, pandas) are imported by the benchmarks that read data: the
# accelerator benchmark on synthetic batches needs only JAX, so it also runs on an accelerator
# image without TensorFlow (tests/test_cli.py).
if TYPE_CHECKING:
    from artjax.data import input_pipeline as ip

# bf16 dense peak FLOP/s by device kind, for MFU (vendor figures; SXM parts).
PEAK_FLOPS = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
}


# Vector extensions that decide how fast each framework's CPU kernels run (BENCHMARKS.md: the
# ratios against Keras differ a lot between AVX2-only and AVX-512/AMX machines).
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU model, family/model numbers and vector extensions, e.g. "AMD EPYC (family 26 model
    2; avx2 avx512f ...)", from /proc/cpuinfo (or the text given); "unknown CPU" elsewhere."""
    if cpuinfo is None:
        path = pathlib.Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return f"unknown CPU ({platform.processor() or platform.machine()})"
    flags = set(fields.get("flags", "").split())
    vector = " ".join(f for f in VECTOR_FLAGS if f in flags) or "no AVX2"
    family = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{fields['model name']} ({family}; {vector})"


def _rate(iterator, images: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(images // batch):
        next(iterator)
    return (images // batch) * batch / (time.perf_counter() - start)


def keras_generator(data: ip.PreparedData, config):
    """The study's loader: flow_from_dataframe over the training files, same augmentation."""
    import pandas as pd
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from artjax.data import catalog

    train_files = data.members["train"]
    images = catalog.read_catalog(data.root).images
    images = images[images["filename"].isin(train_files)]
    a = config.data.augment
    generator = ImageDataGenerator(
        rescale=1 / 255,
        rotation_range=a.rotation,
        width_shift_range=a.width_shift,
        height_shift_range=a.height_shift,
        shear_range=a.shear,
        zoom_range=a.zoom,
        brightness_range=list(a.brightness),
        horizontal_flip=a.horizontal_flip,
        fill_mode="nearest",
    )
    return generator.flow_from_dataframe(
        pd.DataFrame({"filename": images["path"], "class": images["style"]}),
        x_col="filename",
        y_col="class",
        target_size=(config.data.image_size, config.data.image_size),
        batch_size=config.batch_size,
        seed=config.seed,
    )


def bench_pipeline(config, n: int) -> dict:
    from artjax.data import input_pipeline as ip
    from artjax.data import preprocess as pp

    data = ip.prepare_data(config.data, config.seed)
    batch = config.batch_size
    decode_only = (
        ip.split_dataset(data, "train")
        .repeat()
        .map(pp.compose(ip.decode_ops(config.data.image_size)), -1)
        .batch(batch)
        .prefetch(-1)
        .as_numpy_iterator()
    )
    rates = {"decode+resize": _rate(decode_only, n, batch)}
    train_images = data.num_examples("train")
    full = ip.train_dataset(data, config, num_devices=1).as_numpy_iterator()
    rates["full, cold (first pass)"] = _rate(full, min(n, train_images), batch)
    _rate(full, train_images, batch)  # finish filling the cache
    rates["full, warm (cached)"] = _rate(full, n, batch)
    rates["keras ImageDataGenerator"] = _rate(iter(keras_generator(data, config)), n, batch)
    return rates


def _time_steps(step, n) -> float:
    """Median seconds per step over `n` steps after two warm-up steps; `step()` blocks. (pmap
    compiles
    twice: the replicated input state and the step's output state carry different shardings.) The
    median, because on a shared 2-core VM single steps now and then run 10-20% slow."""
    step()
    step()
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def _train_step_and_state(config):
    """artjax's pmap'd train step (unit class weights, donated state) and a fresh replicated
    state."""
    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = steps.replicate(train_state.create_train_state(config, model, steps_per_epoch=100))
    p_step = jax.pmap(
        functools.partial(steps.train_step, class_weights=jnp.ones(6)),
        axis_name=steps.AXIS,
        donate_argnums=(0,),
    )
    return p_step, state


def _blocking_step(p_step, state, next_batch):
    """(step, holder): `step()` runs `p_step` on `next_batch()` and blocks; holder[0] is the latest
    state."""
    holder = [state]

    def step():
        holder[0], metrics = p_step(holder[0], next_batch())
        jax.block_until_ready(metrics)

    return step, holder


def _step_seconds(p_step, state, next_batch, n: int):
    """(seconds per step, the state after the timed steps) of `p_step` fed by `next_batch()`."""
    step, holder = _blocking_step(p_step, state, next_batch)
    return _time_steps(step, n), holder[0]


def _synthetic_batch(batch: int, size: int) -> dict:
    """A fixed batch of random images and labels of 6 classes, laid out over the local devices
    (at least one image each)."""
    devices = jax.local_device_count()
    per_device = max(1, batch // devices)
    rng = np.random.default_rng(0)
    return {
        "image": rng.random((devices, per_device, size, size, 3), np.float32),
        "label": rng.integers(0, 6, (devices, per_device)).astype(np.int32),
    }


def artjax_train_step(name: str, batch: int, size: int, conv_impl: str):
    """A blocking call of artjax's pmap'd train step on one fixed synthetic batch."""
    config = configs.base_config()
    config.data.image_size = size
    config.model.conv_impl = conv_impl
    if name == "cnn":
        config.model.name = "cnn"
    else:
        config.model.name, config.model.depth, config.model.variant = "resnet", 50, "v1"
    p_step, state = _train_step_and_state(config)
    data = _synthetic_batch(batch, size)
    return _blocking_step(p_step, state, lambda: data)[0]


def keras_train_step(name: str, batch: int, size: int):
    """A blocking Keras `train_on_batch` of the same architecture on one fixed synthetic batch."""
    import keras  # only this benchmark needs Keras

    if name == "cnn":  # the study's Sequential model
        layers = [keras.Input((size, size, 3))]
        for f in (32, 64, 128, 128):
            layers += [keras.layers.Conv2D(f, 3, activation="relu"), keras.layers.MaxPooling2D(2)]
        layers += [
            keras.layers.Flatten(),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(6),
        ]
        model = keras.Sequential(layers)
    else:
        model = keras.applications.ResNet50(
            weights=None, input_shape=(size, size, 3), classes=6, classifier_activation=None
        )
    # jit_compile=False: TensorFlow's own (oneDNN) kernels, the study's stack; XLA would give Keras
    # the same slow CPU convolution backward pass as artjax's conv_impl=xla.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), np.float32)
    y = rng.integers(0, 6, batch)
    return lambda: model.train_on_batch(x, y)


def _measure_in_this_process(
    framework: str, name: str, batch: int, size: int, impl: str, n: int
) -> float:
    # The spawned process inherits the parent's malloc settings as GLIBC_TUNABLES
    # (artjax.host_memory).
    step = (
        keras_train_step(name, batch, size)
        if framework == "keras"
        else artjax_train_step(name, batch, size, impl)
    )
    return batch / _time_steps(step, n)


def bench_train(model_names, size: int, n: int, rounds: int) -> list[tuple[str, str, float]]:
    """Images/s (median step) of Keras and each artjax conv_impl, every measurement in a fresh
    process: in one process TensorFlow's and XLA's idle thread pools slow each other down
    (BENCHMARKS.md). A shared VM's speed drifts over minutes, so `rounds` > 1 alternates the
    implementations round by round and reports each one's median."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in model_names:
        batch = {"cnn": 32, "resnet50": 16}[name]
        candidates = [("keras (TF backend)", "keras", "")] + [
            (f"artjax pmap, conv_impl={impl}", "artjax", impl) for impl in ("xla", "patches")
        ]
        rates = {who: [] for who, _, _ in candidates}
        for _ in range(rounds):
            for who, framework, impl in candidates:
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                    rates[who].append(
                        pool.submit(
                            _measure_in_this_process, framework, name, batch, size, impl, n
                        ).result()
                    )
        rows += [(name, who, float(np.median(r))) for who, r in rates.items()]
    return rows


def _compile_in_this_process(config_json: str, n: int) -> dict:
    """Process CPU seconds to trace and lower, then to compile, the plain pmap'd train step of a
    config (no era head) under this process's XLA_FLAGS, and the median step after."""
    config = configs.from_record(json.loads(config_json))
    p_step, state = _train_step_and_state(config)
    batch = _synthetic_batch(config.batch_size, config.data.image_size)
    start = time.process_time()
    lowered = p_step.lower(state, batch)
    traced = time.process_time()
    compiled = lowered.compile()
    done = time.process_time()
    seconds, _ = _step_seconds(compiled, state, lambda: batch, n)
    return dict(trace_cpu_s=traced - start, compile_cpu_s=done - traced, step_s=seconds)


def bench_compile(config, flag_sets, n: int) -> list[dict]:
    """The train step's trace and compile CPU time and its step time under each of `flag_sets`
    (XLA flags added to this process's XLA_FLAGS), each in a fresh process (XLA reads its flags
    once) with JAX's persistent compilation cache off, one after another."""
    context = multiprocessing.get_context("spawn")
    base = os.environ.get("XLA_FLAGS", "")
    rows = []
    for extra in flag_sets:
        env = {"XLA_FLAGS": f"{base} {extra}".strip(), "JAX_ENABLE_COMPILATION_CACHE": "false"}
        # a spawned process reads the parent's environment at its start
        with unittest.mock.patch.dict(os.environ, env):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                found = pool.submit(_compile_in_this_process, config.to_json(), n).result()
        rows.append(dict(flags=extra, **found))
    return rows


def peak_flops(device) -> float | None:
    kind = device.device_kind
    return next((v for k, v in PEAK_FLOPS.items() if kind.startswith(k)), None)


def bench_accelerator(
    config, sizes, dtypes, batch_per_device: int, n: int, with_pipeline: bool
) -> list[dict]:
    """One row per (input, size, dtype): img/s, step ms, MFU, peak memory. `config.model` is
    timed."""
    devices = jax.local_devices()
    peak = peak_flops(devices[0])
    rows = []
    data = None
    if with_pipeline:
        from artjax.data import input_pipeline as ip

        data = ip.prepare_data(config.data, config.seed)
    for size in sizes:
        for dtype in dtypes:
            config.data.image_size, config.model.dtype = size, dtype
            config.batch_size = batch_per_device * len(devices)
            p_step, state = _train_step_and_state(config)
            rng = np.random.default_rng(0)
            shard = jax.sharding.NamedSharding(
                jax.sharding.Mesh(np.array(devices), ("d",)), jax.sharding.PartitionSpec("d")
            )
            synthetic_batch = jax.device_put(
                {
                    "image": rng.random(
                        (len(devices), batch_per_device, size, size, 3), np.float32
                    ),
                    "label": rng.integers(0, 6, (len(devices), batch_per_device)).astype(np.int32),
                },
                shard,
            )
            flops_per_step = 0.0  # per device; only for MFU, where the peak is known
            if peak:
                cost = p_step.lower(state, synthetic_batch).compile().cost_analysis()
                cost = cost[0] if isinstance(cost, (list, tuple)) else cost
                flops_per_step = (cost or {}).get("flops", 0.0)
            sources = [("synthetic", lambda: synthetic_batch)]
            if with_pipeline:
                batches = jax_utils.prefetch_to_device(
                    ip.train_dataset(data, config, len(devices)).as_numpy_iterator(), 2
                )
                sources.append(("tf.data", lambda: next(batches)))
            for source, next_batch in sources:
                seconds, state = _step_seconds(p_step, state, next_batch, n)
                memory = (devices[0].memory_stats() or {}).get("peak_bytes_in_use")
                rows.append(
                    dict(
                        input=source,
                        size=size,
                        dtype=dtype,
                        images_per_second=config.batch_size / seconds,
                        step_ms=1000 * seconds,
                        mfu=(flops_per_step / seconds / peak)
                        if (peak and flops_per_step)
                        else None,
                        peak_memory_gib=memory / 2**30 if memory else None,
                    )
                )
    return rows


# --- the exported model against the library (python -m artjax.bench export) ---------------------


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _serving_paths(workdir, fmt_dir) -> dict:
    """{path name: (load(), run(list of encoded paintings) -> probabilities)} for the Predictor,
    the SavedModel's serve_encoded and TFLite (decoded and resized by TensorFlow first, as an
    application does)."""
    import tensorflow as tf

    from artjax.data import input_pipeline as ip
    from artjax.data import preprocess as pp
    from artjax.serving import inference, records

    paths = {}
    holder = {}

    def load_predictor():
        holder["predictor"] = inference.Predictor(workdir)

    def run_predictor(encoded):
        predictor = holder["predictor"]
        return predictor.probabilities_of(np.stack([predictor.preprocess(e) for e in encoded]))

    paths["Predictor (JAX)"] = (load_predictor, run_predictor)

    def load_savedmodel():
        holder["savedmodel"] = tf.saved_model.load(str(fmt_dir["savedmodel"]))

    def run_savedmodel(encoded):
        signature = holder["savedmodel"].signatures["serve_encoded"]
        return signature(encoded=tf.constant(encoded))["probabilities"].numpy()

    paths["SavedModel serve_encoded"] = (load_savedmodel, run_savedmodel)
    record = records.read_record(fmt_dir["tflite"])
    resize = pp.compose(ip.decode_ops(record["input_size"]))

    def load_tflite():
        interpreter = tf.lite.Interpreter(
            model_path=str(fmt_dir["tflite"] / records.TFLITE_FILE), num_threads=os.cpu_count()
        )
        holder["tflite"] = interpreter.get_signature_runner("serving_default")

    def run_tflite(encoded):
        images = np.stack([resize({"image": tf.constant(e)})["image"] for e in encoded])
        return holder["tflite"](images=images)["probabilities"]

    paths["TFLite (XNNPACK), TF decode+resize"] = (load_tflite, run_tflite)
    return paths


def bench_export(workdir, paintings_root, count: int, batch: int, repeats: int, output) -> list:
    """One row per path (`_serving_paths`): seconds from loading to the first answer (one
    painting), paintings/s at batch 1 and at `batch`, and batch-1 latency p50/p99, on `count` real
    paintings (`repeats` passes each; the best pass's rate). Exports the run to `output` first."""
    from artjax.data import catalog
    from artjax.serving import exported, records

    files = sorted(catalog.read_catalog(paintings_root, include_multi_genre=True).images["path"])
    if not files:
        raise catalog.DataError(f"{paintings_root}: no paintings to time")
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, count).astype(int)]
    encoded = [pathlib.Path(f).read_bytes() for f in chosen]
    output = pathlib.Path(output)
    fmt_dir = {fmt: output / fmt for fmt in exported.FORMATS}
    export_seconds = {
        fmt: _timed(lambda: exported.export(workdir, path, fmt)) for fmt, path in fmt_dir.items()
    }
    dimensions = records.read_record(fmt_dir["savedmodel"])["embedding_dimensions"]
    rows, reference = [], None
    for name, (load, run) in _serving_paths(workdir, fmt_dir).items():
        ready = _timed(lambda: (load(), run(encoded[:1])))
        run(encoded[:batch])  # the batch shape compiled once, as a server would at start
        latencies = []
        for _ in range(repeats):
            latencies += [_timed(lambda: run([e])) for e in encoded]
        batched = [
            _timed(lambda: [run(encoded[i : i + batch]) for i in range(0, count, batch)])
            for _ in range(repeats)
        ]
        found = np.concatenate([run(encoded[i : i + batch]) for i in range(0, count, batch)])
        reference = found if reference is None else reference
        rows.append(
            dict(
                path=name,
                ready_seconds=ready,
                batch1_per_second=1.0 / float(np.mean(latencies)),
                batched_per_second=count / min(batched),
                p50_ms=1e3 * float(np.percentile(latencies, 50)),
                p99_ms=1e3 * float(np.percentile(latencies, 99)),
                max_abs_difference=float(np.abs(found - reference).max()),
            )
        )
    return rows, export_seconds, dimensions


def run_data_root(workdir) -> str:
    """The data.root a run (or a CV's first fold) was trained on."""
    from artjax import checkpointing

    run = (
        checkpointing.fold_workdirs(workdir)[0] if checkpointing.is_cv_workdir(workdir) else workdir
    )
    return checkpointing.read_run(run)["config"]["data"]["root"]


def bench_nearest(dimensions: int, sizes, queries: int = 20, seed: int = 0) -> list[dict]:
    """Brute-force nearest neighbours (`collection.CollectionIndex.nearest`: one matrix-vector
    product and a partial sort) over `size` random unit embeddings: median ms per query (k=8) and
    the matrix's memory."""
    from artjax.serving import collection

    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        embeddings = rng.standard_normal((size, dimensions), dtype=np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        index = collection.CollectionIndex("", embeddings, [""] * size, [], [], [], [0])
        probes = rng.standard_normal((queries, dimensions), dtype=np.float32)
        index.nearest(probes[0])
        times = [_timed(lambda: index.nearest(q, 8)) for q in probes]
        rows.append(
            dict(size=size, ms=1e3 * float(np.median(times)), gib=embeddings.nbytes / 2**30)
        )
    return rows


# --- the gallery service under load (python -m artjax.bench serve) ------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(export_dir, max_batch: int):
    """(process, url, seconds until /readyz answers, seconds until every batch size is warm) of
    `python -m artjax.serve` on a free local port."""
    import subprocess
    import sys

    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "artjax.serve", f"--model={export_dir}", f"--port={port}"]
    command += [f"--max_batch={max_batch}", "--log_level=warning"]
    process = subprocess.Popen(command)
    url, started, ready = f"http://127.0.0.1:{port}", time.perf_counter(), None
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"artjax.serve --model={export_dir} exited ({process.returncode})")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=1)
            if answer.status_code == 200:
                ready = ready or time.perf_counter() - started
                if max_batch in answer.json()["warm_batch_sizes"]:
                    return process, url, ready, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


async def _load(url: str, encoded: list[bytes], concurrency: int, requests: int) -> dict:
    """`requests` POSTs of /v1/predict from `concurrency` clients at once (each waits for its
    answer before its next request): paintings/s and latency percentiles."""
    import httpx

    latencies, failures = [], 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        counter = iter(range(requests))

        async def worker():
            nonlocal failures
            for i in counter:
                files = {"file": ("painting.jpg", encoded[i % len(encoded)], "image/jpeg")}
                start = time.perf_counter()
                answer = await client.post("/v1/predict", files=files)
                latencies.append(time.perf_counter() - start)
                failures += answer.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return dict(
        per_second=requests / wall,
        p50_ms=1e3 * float(np.percentile(latencies, 50)),
        p99_ms=1e3 * float(np.percentile(latencies, 99)),
        failures=failures,
    )


def export_batched_rate(export_dir, encoded: list[bytes], batch: int, repeats: int = 2) -> float:
    """Paintings/s of the export's serve_encoded alone at `batch` (its best of `repeats`)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(export_dir)).signatures["serve_encoded"]
    chunks = [encoded[i : i + batch] for i in range(0, len(encoded), batch)]
    signature(encoded=tf.constant(chunks[0]))
    best = min(
        _timed(lambda: [signature(encoded=tf.constant(c)) for c in chunks]) for _ in range(repeats)
    )
    return len(encoded) / best


def bench_serve(exports: dict, paintings_root, concurrencies, requests: int, max_batch: int):
    """Rows per (export, batching on/off, concurrency): a real `artjax.serve` process and an
    asyncio httpx load generator in this process, on real paintings."""
    from artjax.data import catalog

    files = sorted(catalog.read_catalog(paintings_root, include_multi_genre=True).images["path"])
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, 64).astype(int)]
    encoded = [pathlib.Path(f).read_bytes() for f in chosen]
    rows = []
    for name, export_dir in exports.items():
        alone = export_batched_rate(export_dir, encoded, 32)
        rows.append(dict(model=name, batching="export alone, batch 32", per_second=alone))
        for batch in (max_batch, 1):
            process, url, ready, warm = _start_server(export_dir, batch)
            try:
                for concurrency in concurrencies:
                    found = asyncio.run(_load(url, encoded, concurrency, requests))
                    rows.append(
                        dict(
                            model=name,
                            batching=f"max_batch={batch}",
                            concurrency=concurrency,
                            ready_seconds=ready,
                            warm_seconds=warm,
                            **found,
                        )
                    )
            finally:
                process.terminate()
                process.wait(timeout=60)
    return rows


# bench backbone: crop sets by name -> (data.views, data.crop_fraction)
CROP_SETS = {
    "whole": ("whole", 0.875),
    "crops50": ("crops", 0.5),
    "crops25": ("crops", 0.25),
}


def backbone_config(base, lite_version: int, crop_set: str):
    """`base` (a frozen EfficientNet-Lite config) with Lite`lite_version` at its own resolution,
    its ported weights (checkpoints/imagenet/efficientnet_lite<v>) and the views of `crop_set`."""
    from artjax.models import efficientnet_lite

    if crop_set not in CROP_SETS:
        raise ValueError(f"crop set {crop_set!r} is not one of {sorted(CROP_SETS)}")
    config = base.copy_and_resolve_references()
    config.model.lite_version = lite_version
    config.data.image_size = efficientnet_lite.VERSIONS[lite_version][2]
    config.init.checkpoint = f"checkpoints/imagenet/efficientnet_lite{lite_version}"
    config.data.views, config.data.crop_fraction = CROP_SETS[crop_set]
    return config


def bench_backbone(config, images: int) -> dict:
    """The frozen backbone's pass per painting as a feature cache computes it (tf.data decode and
    resize of every view, the pmap'd forward pass, features back on the host) over the first
    `images` paintings of the class set by filename, after one untimed batch (compilation)."""
    from artjax import trainer
    from artjax.data import input_pipeline as ip

    data = ip.prepare_data(config.data, config.seed)
    model, plan = train_state.build_model(config, len(data.classes))
    state = train_state.create_train_state(config, model, 1, classes=data.classes, plan=plan)
    compute = trainer.feature_pass(config, model, state, jax.local_device_count())
    names = sorted(r.filename for r in data.rows)
    compute(ip.with_images(data, "warm", names[: config.eval_batch_size]), "warm")
    start = time.perf_counter()
    found = compute(ip.with_images(data, "timed", names[:images]), "timed")
    seconds = time.perf_counter() - start
    return dict(
        paintings=len(found["filename"]),
        views=int(found["features"].shape[1]) if found["features"].ndim == 3 else 1,
        ms_per_painting=1000 * seconds / len(found["filename"]),
        features=int(found["features"].shape[-1]),
    )


def finetune_train_step(config, depth: str, num_classes: int = 6):
    """A blocking call of the pmap'd train step that `artjax.train` runs for `config` with the
    trainable share `depth` (transfer.DEPTHS), era head and frozen layers included, on one fixed
    synthetic batch of `config.batch_size` images."""
    from artjax import trainer, transfer

    config = config.copy_and_resolve_references()
    config.init.checkpoint = ""  # random weights: the same step time
    transfer.apply_depth(config, depth)
    model, the_plan = train_state.build_model(config, num_classes)
    state = train_state.create_train_state(config, model, steps_per_epoch=100, plan=the_plan)
    trainable = transfer.trainable_keys(state.params, the_plan)
    era_weight = config.era.loss_weight if config.model.era_head else 0.0
    step = functools.partial(
        steps.train_step,
        class_weights=jnp.ones(num_classes),
        label_smoothing=config.label_smoothing,
        trainable=None if len(trainable) == len(jax.tree.leaves(state.params)) else trainable,
        apply_fn=functools.partial(model.apply, method=trainer.image_heads) if era_weight else None,
        era_weight=era_weight,
        era_loss=config.era.loss,
        era_edges=trainer.era_bin_edges(config),
    )
    p_step = jax.pmap(step, axis_name=steps.AXIS, donate_argnums=(0,))
    devices, size = jax.local_device_count(), config.data.image_size
    per_device = config.batch_size // devices
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(devices, per_device, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, num_classes, (devices, per_device)).astype(np.int32),
        "era": np.tile(np.array([1.5, 1.9], np.float32), (devices, per_device, 1)),
    }
    share = len(the_plan.trainable)
    return _blocking_step(p_step, steps.replicate(state), lambda: batch)[0], share


def bench_finetune(config, depths, n: int) -> list[dict]:
    """Train-step images/s (median of `n` steps after two warm-up ones) of each trainable share,
    in this process, one after another."""
    rows = []
    for depth in depths:
        start = time.perf_counter()
        step, layers = finetune_train_step(config, depth)
        seconds = _time_steps(step, n)
        rows.append(
            dict(
                depth=depth,
                trainable_layers=layers,
                images_per_second=config.batch_size / seconds,
                step_s=seconds,
                total_s=time.perf_counter() - start,
            )
        )
    return rows
