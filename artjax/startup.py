"""What every command does first, before TensorFlow or JAX is imported (`before_imports`).

Two settings that only take effect that early:
- freed host memory stays in the process (`artjax.host_memory`);
- TensorFlow does not import Keras. When Keras is installed (the `port` extra), `import tensorflow`
  imports it eagerly, a few seconds of every command's start, although artjax never uses
  `tf.keras`. With TF_USE_LEGACY_KERAS set, TensorFlow looks for the `tf_keras` package instead,
  and where that is not installed it imports nothing. `import keras` itself still works (the Keras
  port and benchmark use Keras 3 directly).
"""

from __future__ import annotations

import os

from artjax import host_memory


def before_imports() -> None:
    host_memory.keep_freed_memory()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
