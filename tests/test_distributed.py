"""Two processes on localhost, joined by `jax.distributed.initialize` with CPU collectives (gloo,
JAX's default on CPU), two fake devices each: the multi-host runtime as on a GPU cluster or a TPU
pod, on one machine (tests/distributed_worker.py is each process)."""

import concurrent.futures
import json
import os
import socket

import jax
import numpy as np
import pytest

from artjax import checkpointing, evaluation
from artjax.data import input_pipeline as ip
from tests import distributed_worker as worker
from tests.conftest import PROJECT_ROOT, one_step, run_command, xla_flags

# One pytest worker runs this module's tests, so its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("two_processes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    env = dict(
        os.environ,
        PYTHONPATH=str(PROJECT_ROOT),
        XLA_FLAGS=xla_flags(2),
    )
    address = f"localhost:{_free_port()}"
    # both at once, forked by the command server (tests/command_server.py)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(
                run_command,
                [str(out), str(synthetic_root), "--distributed"]
                + [f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"],
                script=PROJECT_ROOT / "tests/distributed_worker.py",
                env=env,
                timeout=400,
            )
            for i in range(2)
        ]
        results = [p.result() for p in started]
    for result in results:
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out, [r.stdout + r.stderr for r in results]


def test_one_step_on_two_processes_equals_the_single_process_step(two_processes):
    out, _ = two_processes
    single, _ = one_step(worker.step_config(), worker.global_batch(), jax.devices()[:4])
    expected = worker.flat(single)
    assert any(k.startswith("['b']") for k in expected)  # BatchNorm statistics are compared too
    for process in range(2):
        found = np.load(out / f"step_{process}.npz")
        assert sorted(found.files) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(found[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


def test_each_process_reads_a_disjoint_shard_of_every_split(two_processes, synthetic_root):
    out, _ = two_processes
    config = worker.run_config(str(synthetic_root), out)
    data = ip.prepare_data(config.data, config.seed)
    shards = [json.loads((out / f"shards_{i}.json").read_text()) for i in range(2)]
    for split in ("train", "val", "test"):
        first, second = set(shards[0][split]), set(shards[1][split])
        assert first and second and not first & second, split
        assert first | second == data.members[split], split
        assert abs(len(first) - len(second)) <= 1, split


def test_only_process_0_writes_logs_and_its_checkpoint_restores_on_one_process(two_processes):
    out, logs = two_processes
    workdir = out / "run"
    assert "epoch 1: train_loss" in logs[0] and "epoch 1:" not in logs[1]
    metrics = checkpointing.read_metrics(workdir)
    assert [m["epoch"] for m in metrics] == [1]
    assert len(list((workdir / "tensorboard").iterdir())) == 1
    ckpt = checkpointing.Checkpoints(workdir)
    assert ckpt.all_steps() == [metrics[-1]["step"]]
    ckpt.close()
    # one process with four devices restores the two-process checkpoint; its validation on that
    # checkpoint equals what the two processes logged
    report = evaluation.evaluate(workdir, split="val", checkpoint="latest")
    assert report["step"] == metrics[-1]["step"]
    assert report["accuracy"] == pytest.approx(metrics[-1]["val_accuracy"], abs=1e-6)
    assert report["loss"] == pytest.approx(metrics[-1]["val_loss"], rel=1e-5)
