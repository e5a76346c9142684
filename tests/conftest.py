"""Shared fixtures. Four fake CPU devices for every test (set before JAX is imported); the process
set up as the commands set theirs up (artjax.startup).

Real paintings come from $ARTJAX_REAL_DATA (default: ../shared/data/best_artworks from the project
root). Without them, tests that need them skip, except under CI=true, where that is a failure.
"""

import os
import pathlib


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test process with `devices` fake CPU devices. XLA's compile time dominates
    the suite, so tiny models compile cheaply: LLVM's optimizations off (about half the time, same
    float semantics) and XLA's older elemental emitters for CPU fusions instead of its MLIR fusion
    emitters (a quarter less CPU on two modules' cold compiles: BENCHMARKS.md)."""
    return (
        f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
        " --xla_cpu_use_fusion_emitters=false"
    )


# Every compiled program is also kept in a persistent cache shared by the pytest workers and the
# commands they start, so each distinct program compiles once.
os.environ.setdefault("XLA_FLAGS", xla_flags(4))
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "xla"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from artjax import startup  # noqa: E402

# As the commands do: freed host memory kept (~30% off every CPU train step), and TensorFlow
# without Keras (seconds off the start of every process the tests run; inherited through the env).
startup.before_imports()

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA = pathlib.Path(
    os.environ.get("ARTJAX_REAL_DATA", PROJECT_ROOT.parent / "shared" / "data" / "best_artworks")
)


@pytest.fixture(scope="session")
def real_data_root() -> pathlib.Path:
    if not (REAL_DATA / "artists.csv").is_file():
        message = f"real paintings not found at {REAL_DATA} (set ARTJAX_REAL_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REAL_DATA


@pytest.fixture(scope="session")
def real_builder(real_data_root):
    """The real paintings prepared once for all pytest workers (and kept between runs, in
    .pytest_cache: preparing takes a minute); a lock keeps two workers from writing it at once."""
    import fcntl

    from artjax.data import best_artworks

    prepared = PROJECT_ROOT / ".pytest_cache" / "prepared_real"
    prepared.mkdir(parents=True, exist_ok=True)
    with open(prepared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return best_artworks.prepare(real_data_root, prepared)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from artjax.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), images_per_artist=8, size=48)


def make_config(root, prepared_dir, **data_overrides):
    from artjax import configs

    config = configs.base_config()
    config.data.root = str(root)
    config.data.prepared_dir = str(prepared_dir)
    config.data.image_size = 32
    config.batch_size = 8
    config.eval_batch_size = 8
    config.data.update(data_overrides)
    return config


def make_tiny_port(model_config, path):
    """(path, variables): a ported checkpoint of `model_config`'s (tiny) ResNet, as `python -m
    artjax.port` writes them, with weights unlike any fresh initialization."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from artjax import models
    from artjax.models import porting

    model = models.create_model(model_config, 1000)
    variables = model.init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))
    variables = jax.tree.map(lambda x: np.asarray(x) + 0.01, variables)
    meta = dict(
        source="torchvision",
        normalization="imagenet",
        input_size=32,
        num_classes=1000,
        has_head=True,
        architecture={k: model_config[k] for k in porting.ARCHITECTURE_KEYS["resnet"]},
    )
    return porting.save(path, variables, meta), variables


def override(config, overrides: dict):
    """Sets dotted config keys ("data.image_size") as --config.a.b=v does."""
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def experiment_config(spec: str, overrides: dict):
    """experiments/<file>.py[:variant] with dotted-key overrides, as the commands load it."""
    import importlib.util

    name, _, variant = spec.partition(":")
    path = PROJECT_ROOT / "experiments" / name
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return override(module.get_config(variant or None), overrides)


def tiny_config(root, tmp_path, **overrides):
    """A run of a few seconds on synthetic paintings: `overrides` are dotted config keys."""
    config = make_config(root, pathlib.Path(tmp_path) / "prepared")
    config.data.image_size = 48  # the CNN's four conv+pool stages need at least 46
    config.num_epochs = 2
    config.log_every_steps = 2
    config.model.dropout_rate = 0.0
    config.data.augment_enabled = False
    return override(config, overrides)


def one_step(config, batch, devices=None):
    """(state, metrics) after one pmap'd train step on `batch` split over `devices` (default: the
    process's local devices; in a multi-process run `batch` is this process's part of the global
    batch and the gradient and BatchNorm statistics are averaged over every process's devices)."""
    import functools

    import jax
    import jax.numpy as jnp

    from artjax import models, steps, train_state

    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    p_step = jax.pmap(
        functools.partial(steps.train_step, class_weights=jnp.linspace(0.5, 2, 6)),
        axis_name=steps.AXIS,
        devices=devices,
    )
    count = len(devices) if devices else jax.local_device_count()
    laid_out = {k: v.reshape(count, -1, *v.shape[1:]) for k, v in batch.items()}
    new_state, metrics = p_step(steps.replicate(state, devices), laid_out)
    return steps.unreplicate(new_state), jax.device_get(metrics)


def copied_run(workdir, tmp_path) -> pathlib.Path:
    """A copy of a shared finished run's workdir, for a test that changes it."""
    import shutil

    shutil.copytree(workdir, pathlib.Path(tmp_path) / "run")
    return pathlib.Path(tmp_path) / "run"


def three_epoch_config(root, prepared, **overrides):
    """The CNN on synthetic paintings at 48 px for 3 epochs, keeping 2 checkpoints (plus the
    best): the session's `finished_run`."""
    config = make_config(root, prepared)
    config.data.image_size = 48  # the CNN's four conv+pool stages need at least 46
    config.num_epochs, config.log_every_steps, config.keep_checkpoints = 3, 2, 2
    config.model.dropout_rate = 0.0
    config.data.augment_enabled = False
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def finished_run(synthetic_root, tmp_path_factory):
    """(config, workdir) of a finished 3-epoch run (checkpoints of epochs 2 and 3 kept, plus the
    best). Shared: tests that change it work on a copy. Modules that use it share the xdist group
    "finished_run", so one worker builds it."""
    from artjax import trainer

    root = tmp_path_factory.mktemp("finished_run")
    config = three_epoch_config(synthetic_root, root / "prepared")
    trainer.train_and_evaluate(config, root / "run")
    return config, root / "run"


def _start_command_server(files: pathlib.Path) -> str:
    """tests/command_server.py serving at `files`/socket until this pytest run ends (its xdist
    controller, or this process without xdist); started once, by the first worker that asks. Its
    address is exported (command_server.ADDRESS_VARIABLE) to the processes the tests start."""
    import fcntl
    import select
    import subprocess
    import sys

    from tests import command_server

    address = files / "socket"
    with open(files / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not address.exists():
            log = files / "server.log"
            owner = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
            process = subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "tests" / "command_server.py")]
                + ["--serve", str(address), str(owner)],
                stdout=subprocess.PIPE,
                stderr=open(log, "w"),
                text=True,
                env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
                start_new_session=True,  # outlives the worker that started it, not the run
            )
            ready, _, _ = select.select([process.stdout], [], [], 600)
            if not ready or process.stdout.readline().strip() != "ready":
                process.kill()
                raise RuntimeError(f"the command server did not start:\n{log.read_text()[-3000:]}")
    os.environ[command_server.ADDRESS_VARIABLE] = str(address)
    return str(address)


_command_server_address = None


def command_server_address() -> str:
    global _command_server_address
    if _command_server_address is None:
        import tempfile

        run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of a run
        if run:
            files = pathlib.Path(tempfile.gettempdir()) / f"artjax_commands_{run}"
            files.mkdir(exist_ok=True)
        else:
            files = pathlib.Path(tempfile.mkdtemp(prefix="artjax_commands_"))
        _command_server_address = _start_command_server(files)
    return _command_server_address


def run_command(args, *, cwd=None, env=None, code=None, script=None, timeout=600):
    """What `python -m args[0] args[1:]` (with `code`: `python -c code args`; with `script`:
    `python script args`) would do, output captured, as a `subprocess.CompletedProcess`: run by
    the run's command server, which forks it with the libraries already imported
    (tests/command_server.py). `env` defaults to this process's, with the project on PYTHONPATH."""
    import subprocess

    from tests import command_server

    address = command_server_address()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)) if env is None else env
    args = [str(a) for a in args]
    if code is not None:
        argv = ["-c", code, *args]
    elif script is not None:
        argv = [str(script), *args]
    else:
        argv = ["-m", *args]
    request = dict(
        command_server.python_arguments(argv), cwd=str(cwd or PROJECT_ROOT), env=dict(env)
    )
    returncode, out, err = command_server.request(address, request, timeout)
    return subprocess.CompletedProcess(args, returncode, out, err)


def command_python(directory) -> str:
    """An executable that stands in for `python` in scripts the tests run: it runs its arguments
    through the run's command server."""
    import sys

    command_server_address()
    path = pathlib.Path(directory) / "python"
    server = PROJECT_ROOT / "tests" / "command_server.py"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{server}" "$@"\n')
    path.chmod(0o755)
    return str(path)


def tiny_head(tmp_path, num_classes: int, **model_overrides):
    """(model, state) of a tiny ResNet whose heads train on 16-dimensional features."""
    from artjax import models, steps, train_state

    config = make_config("", pathlib.Path(tmp_path) / "prepared")
    config.model.update(name="resnet", stage_sizes=(1,), width=4, dropout_rate=0.0)
    config.model.update(model_overrides)
    model = models.create_model(config.model, num_classes, axis_name=steps.AXIS)
    return model, train_state.create_train_state(config, model, steps_per_epoch=4)


def head_step(model, state, batch, **step_kwargs):
    """(new state, metrics) of one train step of the model's head(s) on feature `batch` ([8, ...]
    arrays), split over two devices; `step_kwargs` go to steps.train_step."""
    import functools

    import jax
    import jax.numpy as jnp

    from artjax import models, steps

    step = functools.partial(
        steps.train_step,
        class_weights=jnp.ones(model.num_classes),
        apply_fn=models.head_apply(model, with_era=model.era),
        **step_kwargs,
    )
    devices = jax.local_devices()[:2]
    split = {k: v.reshape(2, v.shape[0] // 2, *v.shape[1:]) for k, v in batch.items()}
    p_step = jax.pmap(step, axis_name=steps.AXIS, devices=devices)
    return p_step(steps.replicate(state, devices), split)


def frozen_resnet_config(root, tmp_path, epochs: int = 2):
    """A frozen tiny ResNet from a tiny port whose head trains on cached features of `root`."""
    tmp_path = pathlib.Path(tmp_path)
    config = make_config(root, tmp_path / "prepared")
    config.num_epochs, config.log_every_steps, config.data.augment_enabled = epochs, 2, False
    config.model.update(name="resnet", stage_sizes=(1, 1), width=4, dropout_rate=0.0)
    port, _ = make_tiny_port(config.model, tmp_path / "port")
    config.init.checkpoint, config.data.normalization = str(port), "imagenet"
    config.freeze.trainable, config.freeze.batch_norm = "head", "frozen"
    return config


# The xdist groups by their tests' summed time in a clean-clone run (BENCHMARKS.md, "The test
# suite"), longest first.
LONGEST_GROUPS = ("finished_run", "ports", "era", "crops_bag", "cv_run", "real_data")


def pytest_collection_modifyitems(config, items):
    """The longest xdist groups first: `--dist loadgroup` hands out work in collection order, and a
    long group handed out last leaves one worker running it alone at the end while the others
    idle. The other tests keep their order (a stable sort)."""

    def rank(item):
        marker = item.get_closest_marker("xdist_group")
        group = marker.args[0] if marker else None  # every group here is named positionally
        return LONGEST_GROUPS.index(group) if group in LONGEST_GROUPS else len(LONGEST_GROUPS)

    items.sort(key=rank)
