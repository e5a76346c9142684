"""Top-k styles of paintings from a trained workdir:
`python -m artjax.predict --workdir checkpoints/<run> [--top_k 3] [--checkpoint best] IMAGE...`"""

from __future__ import annotations

import functools
import io
import pathlib

import jax
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from PIL import Image

from artjax import evaluate, models, synthetic
from artjax import input_pipeline as ip
from artjax import preprocess as pp

class Predictor:
    """A trained model with its own preprocessing, for applications (one process, one device)."""

    def __init__(self, workdir, checkpoint: str = "best"):
        config, run, state, self.step = evaluate.load_run(workdir, checkpoint)
        self.classes, self.synthetic = run["classes"], run["synthetic"]
        model = models.create_model(config.model, len(self.classes))
        variables = {"params": state.params, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}
        self._logits = jax.jit(functools.partial(model.apply, variables, train=False))
        self._preprocess = pp.compose(ip.decode_ops(run["image_size"]) + [pp.make_normalize(run["normalization"])])

    def probabilities(self, encoded: bytes) -> np.ndarray:
        image = self._preprocess({"image": tf.constant(encoded)})["image"]
        return np.asarray(jax.nn.softmax(self._logits(np.asarray(image)[None])[0]))

    def predict_file(self, path, top_k: int = 3) -> list[tuple[str, float]]:
        """[(style, probability)] best first; a file that is not an image is a ValueError naming it."""
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


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more image files")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    predictor = Predictor(flags.FLAGS.workdir, flags.FLAGS.checkpoint)
    if predictor.synthetic:
        print(synthetic.BANNER)
    failed = False
    for path in argv[1:]:
        try:
            ranked = predictor.predict_file(path, flags.FLAGS.top_k)
        except (ValueError, OSError) as e:
            print(f"error: {e}")
            failed = True
            continue
        print(f"{path}: " + ", ".join(f"{style} {p:.3f}" for style, p in ranked))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    evaluate.define_checkpoint_flags()
    flags.DEFINE_integer("top_k", 3, "How many styles to print per image.")
    app.run(main)
