"""A trained model with its own preprocessing, for applications (one process, one device)."""

from __future__ import annotations

import functools
import io
import pathlib

import jax
import numpy as np
import tensorflow as tf
from PIL import Image

from artjax import models, train_state
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp


class Predictor:
    """Top-k styles of image files from a workdir's checkpoint."""

    def __init__(self, workdir, checkpoint: str = "best"):
        config, run, state, self.step = train_state.load_run(workdir, checkpoint)
        self.classes, self.synthetic = run["classes"], run["synthetic"]
        model = models.create_model(config.model, len(self.classes))
        variables = {
            "params": state.params,
            **({"batch_stats": state.batch_stats} if state.batch_stats else {}),
        }
        self._logits = jax.jit(functools.partial(model.apply, variables, train=False))
        self._preprocess = pp.compose(
            ip.decode_ops(run["image_size"]) + [pp.make_normalize(run["normalization"])]
        )

    def probabilities(self, encoded: bytes) -> np.ndarray:
        image = self._preprocess({"image": tf.constant(encoded)})["image"]
        return np.asarray(jax.nn.softmax(self._logits(np.asarray(image)[None])[0]))

    def predict_file(self, path, top_k: int = 3) -> list[tuple[str, float]]:
        """[(style, probability)] best first; a file that is not an image is a ValueError naming
        it."""
        raw = pathlib.Path(path).read_bytes()
        try:
            with Image.open(io.BytesIO(raw)) as im:
                im.load()
                if im.format not in ("JPEG", "PNG"):
                    buf = io.BytesIO()
                    im.convert("RGB").save(buf, "PNG")
                    raw = buf.getvalue()
        except Exception as e:
            raise ValueError(f"{path}: not a readable image ({e})") from e
        probs = self.probabilities(raw)
        order = np.argsort(-probs)[:top_k]
        return [(self.classes[i], float(probs[i])) for i in order]
