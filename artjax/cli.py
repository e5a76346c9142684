"""What the commands share: process set-up and the flags that name a run's checkpoint.

Library modules have no import-time side effects; every command's `main` calls `setup_process()`
first. Scripts that train or evaluate through the library on an accelerator machine should call it
too, so TensorFlow (tf.data only) never takes the GPUs from JAX.
"""

from __future__ import annotations

import jax
from absl import flags, logging


def setup_process(distributed: bool = False) -> None:
    """Hides the accelerators from TensorFlow, starts JAX's multi-process runtime when asked (SLURM,
    TPU pods, JAX_COORDINATOR_ADDRESS, ...), and keeps Orbax's and TFDS's INFO logs out of the
    output unless --verbosity is given (--verbosity=0 shows them)."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    if distributed:
        jax.distributed.initialize()
    if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def define_checkpoint_flags() -> None:
    """--workdir and --checkpoint, for the commands that read a trained run."""
    flags.DEFINE_string("workdir", None, "Training workdir.")
    flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
    flags.mark_flags_as_required(["workdir"])
