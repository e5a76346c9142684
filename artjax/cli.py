"""What the commands share: process set-up and the flags that name a run's checkpoint.

Library modules have no import-time side effects; every command's `main` calls `setup_process()`
first. Scripts that train or evaluate through the library on an accelerator machine should call it
too, so TensorFlow (tf.data only) never takes the GPUs from JAX.
"""

from __future__ import annotations

import contextlib
import logging as logging_std
import os
import sys

import jax
from absl import app, flags, logging


def setup_process(distributed: bool = False) -> None:
    """Hides the accelerators from TensorFlow (where it is installed), starts JAX's multi-process
    runtime when asked, and keeps Orbax's and TFDS's INFO logs out of the output unless --verbosity
    is given (--verbosity=0 shows them).

    `distributed`: `jax.distributed.initialize` with the --coordinator_address, --num_processes and
    --process_id flags where given (see `define_distributed_flags`); what is not given JAX detects
    on SLURM, Open MPI and Cloud TPU, or reads from JAX_COORDINATOR_ADDRESS. On CPU the processes'
    collectives run over gloo (JAX's default `jax_cpu_collectives_implementation`)."""
    try:
        import tensorflow as tf
    except ImportError:  # a JAX-only accelerator image: nothing to hide the devices from
        pass
    else:
        tf.config.set_visible_devices([], "GPU")
    if distributed:
        jax.distributed.initialize(**_distributed_args())
    if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def start(argv, distributed: bool = False):
    """A command's first step (commands without positional arguments): refuses stray arguments,
    sets up the process (`setup_process`) and returns the parsed flags."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_process(distributed)
    return flags.FLAGS


def define_distributed_flags() -> None:
    """--distributed and, for launches JAX cannot detect (e.g. processes started by hand), the
    coordinator's address, the process count and this process's index."""
    flags.DEFINE_bool(
        "distributed", False, "Call jax.distributed.initialize() (multi-process launch)."
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 (else detected or $JAX_COORDINATOR_ADDRESS).",
    )
    flags.DEFINE_integer("num_processes", None, "Processes in the run (else detected).")
    flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")


def _distributed_args() -> dict:
    names = ("coordinator_address", "num_processes", "process_id")
    return {
        n: flags.FLAGS[n].value
        for n in names
        if n in flags.FLAGS and flags.FLAGS[n].value is not None
    }


def define_checkpoint_flags(required: bool = True) -> None:
    """--workdir and --checkpoint, for the commands that read a trained run."""
    flags.DEFINE_string("workdir", None, "Training workdir.")
    flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
    if required:
        flags.mark_flags_as_required(["workdir"])


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors of bad input or a damaged run: a message, not a traceback, is the answer."""
    from artjax import calibration, checkpointing, evaluation, hooks, transfer
    from artjax.data import catalog, splits
    from artjax.models import porting
    from artjax.serving import exported

    return (
        catalog.DataError,
        splits.SplitError,
        checkpointing.CheckpointMismatchError,
        calibration.CalibrationError,
        checkpointing.CheckpointUnreadableError,
        checkpointing.WorkdirWriteError,
        transfer.WeightsMismatchError,
        porting.PortError,
        hooks.NonFiniteLossError,
        evaluation.UnsupportedRunError,
        exported.ExportError,
        FileNotFoundError,
        PermissionError,
    )


def _verbose() -> bool:
    return "verbosity" in flags.FLAGS and flags.FLAGS.verbosity >= 1


def _closed_loop_error(kind, value) -> bool:
    return kind is RuntimeError and str(value) == "Event loop is closed"


def _without_closed_loop_errors(unraisablehook):
    """sys.unraisablehook that drops one kind of noise: when Orbax gives up on a damaged
    checkpoint, TensorStore still completes the read's futures on a closed event loop, and each
    reports a RuntimeError('Event loop is closed') with its traceback."""

    def hook(unraisable):
        if not _closed_loop_error(unraisable.exc_type, unraisable.exc_value):
            unraisablehook(unraisable)

    return hook


class _UnretrievedReadErrors(logging_std.Filter):
    """Drops asyncio's "... exception was never retrieved" reports of the same failed reads."""

    def filter(self, record):
        return "exception was never retrieved" not in record.getMessage()


@contextlib.contextmanager
def reported_errors():
    """Inside a command's main: bad input and damaged runs end the command with their message and
    exit status 1; --verbosity=1 (or more) shows the whole traceback, and Orbax's noise, instead."""
    hook, quiet = sys.unraisablehook, _UnretrievedReadErrors()
    if not _verbose():
        sys.unraisablehook = _without_closed_loop_errors(hook)
        logging_std.getLogger("asyncio").addFilter(quiet)
    try:
        yield
    except _user_errors() as e:
        if _verbose():
            raise
        print(f"error: {e}\n(--verbosity=1 shows the traceback)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Exit now: at interpreter shutdown Orbax's event loop would print pages of asyncio
        # tracebacks about the futures of the failed read, burying the message above.
        os._exit(1)
    finally:
        sys.unraisablehook = hook
        logging_std.getLogger("asyncio").removeFilter(quiet)
