"""One process of the two that tests/test_distributed.py starts on localhost:

    python tests/distributed_worker.py OUT DATA_ROOT --distributed --coordinator_address=HOST:PORT
        --num_processes=2 --process_id=I

with two fake CPU devices per process (XLA_FLAGS). It joins the run through `cli.setup_process`,
as the commands do, then writes to OUT:
- `step_<I>.npz`: the state after one train step on this process's half of `global_batch()`;
- `shards_<I>.json`: the files this process reads of each split;
- `run/`: a short training run of the library's loop, written by both processes together.
"""

import json
import pathlib
import sys

import jax
import numpy as np
from absl import flags

from artjax import cli, trainer
from artjax.data import input_pipeline as ip
from tests.conftest import one_step, tiny_config


def step_config():
    """A ResNet with BatchNorm, whose statistics the step synchronizes; SGD keeps the update
    linear in the gradient, so the summation order stays at round-off."""
    overrides = {"model.name": "resnet", "model.stage_sizes": (1, 1), "model.width": 4}
    # as test_training's four-devices test: the single-process step's program is compiled once
    optimizer = {"optimizer.name": "sgd", "optimizer.learning_rate": 0.1}
    return tiny_config("", "", **overrides, **optimizer)


def global_batch():
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(8, 48, 48, 3)).astype(np.float32),
        "label": rng.integers(0, 6, 8).astype(np.int32),
    }


def run_config(data_root, prepared):
    return tiny_config(data_root, prepared, num_epochs=1, batch_size=8, eval_batch_size=8)


def flat(state) -> dict:
    leaves = jax.tree_util.tree_leaves_with_path({"p": state.params, "b": state.batch_stats})
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(out: pathlib.Path, data_root: str) -> None:
    cli.setup_process(distributed=True)
    process, processes = jax.process_index(), jax.process_count()

    batch = global_batch()
    half = len(batch["label"]) // processes
    local = {k: v[process * half : (process + 1) * half] for k, v in batch.items()}
    state, _ = one_step(step_config(), local)
    np.savez(out / f"step_{process}.npz", **flat(state))

    config = run_config(data_root, out)
    data = ip.prepare_data(config.data, config.seed)
    shards = {}
    for split in ("train", "val", "test"):
        examples = ip.split_dataset(data, split).as_numpy_iterator()
        shards[split] = sorted(ex["filename"].decode() for ex in examples)
    (out / f"shards_{process}.json").write_text(json.dumps(shards))

    trainer.train_and_evaluate(config, out / "run")


if __name__ == "__main__":
    cli.define_distributed_flags()
    argv = flags.FLAGS(sys.argv)
    main(pathlib.Path(argv[1]), argv[2])
