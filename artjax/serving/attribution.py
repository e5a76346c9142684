"""What a prediction looks at: Grad-CAM and integrated gradients through the Flax models.

- `grad_cam_fn(model, layer)`: Grad-CAM (Selvaraju et al.) on the activations of `layer`, by
  default `last_feature_map(...)`: the last module whose output is a spatial feature map (the CNN's
  last convolution, ResNet's last block, EfficientNet-Lite's top convolution and its BatchNorm).
  The gradient reaches that layer through `nn.intercept_methods`: a zero offset is added to its
  output and differentiated, so the models need no change.
- `integrated_gradients_fn(model, steps)`: integrated gradients (Sundararajan et al.) from a
  baseline image (`BASELINES`), midpoint rule over `steps` points of the straight path.
- `Explainer`: a workdir's model (or a CV workdir's fold models, maps averaged) on image files;
  the ranking and probabilities are the Predictor's, so they match `artjax.predict`.

Everything is jitted and batched: images go through in fixed-size batches, one compile per run.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp
from artjax.registry import Registry
from artjax.serving import inference


def _path(module) -> str:
    return "/".join(module.scope.path)


def feature_maps(model, variables, image_shape) -> list[tuple[str, tuple]]:
    """(module path, output shape) of every submodule call whose output is a spatial feature map
    [B, h, w, C] (h, w > 1), in the order the calls return."""
    found = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if (
            context.method_name == "__call__"
            and context.module.scope.path
            and getattr(out, "ndim", 0) == 4
            and min(out.shape[1:3]) > 1
        ):
            found.append((_path(context.module), tuple(out.shape)))
        return out

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.apply(variables, jnp.zeros((1, *image_shape)), train=False))
    return found


def last_feature_map(model, variables, image_shape) -> str:
    found = feature_maps(model, variables, image_shape)
    if not found:
        raise ValueError(f"{type(model).__name__} has no spatial feature map for Grad-CAM")
    return found[-1][0]


def _target_logits(logits, targets):
    # a one-hot product, not a gather, so the exported Grad-CAM converts to TFLite (whose
    # converter takes no gather of a batch of unknown size)
    return jnp.sum(logits * jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype), -1)


def grad_cam_fn(model, layer: str):
    """cam(variables, images [B, H, W, 3], targets [B]) -> [B, H, W] in [0, 1]: the ReLU of the
    layer's channels weighted by the mean gradient of each target logit, upsampled bilinearly to
    the image and scaled to a maximum of 1 (all zeros where nothing counts for the class)."""

    def offset_layer(variables, images, offset):
        """The logits with `offset` added to `layer`'s output, and that output."""
        seen = []

        def add(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and _path(context.module) == layer:
                out = out + offset.astype(out.dtype)
                seen.append(out)
            return out

        with nn.intercept_methods(add):
            logits = model.apply(variables, images, train=False)
        if len(seen) != 1:
            raise ValueError(f"layer {layer!r} is called {len(seen)} times, not once")
        return logits, seen[0]

    def cam(variables, images, targets):
        shape = jax.eval_shape(
            lambda: offset_layer(variables, images, jnp.zeros((), jnp.float32))[1]
        ).shape

        def summed(offset):
            logits, activations = offset_layer(variables, images, offset)
            return _target_logits(logits, targets).sum(), activations

        zeros = jnp.zeros(shape, jnp.float32)
        gradients, activations = jax.grad(summed, has_aux=True)(zeros)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        maps = jax.nn.relu((weights * activations.astype(jnp.float32)).sum(-1))
        maps = maps / jnp.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
        height, width = images.shape[1:3]
        maps = jax.image.resize(maps, (maps.shape[0], height, width), "bilinear")
        return jnp.clip(maps, 0.0, 1.0)

    return jax.jit(cam)


def integrated_gradients_fn(model, steps: int):
    """ig(variables, images, baselines, targets) -> attributions [B, H, W, 3] of each target logit
    to each input value: (x - baseline) times the mean gradient at the midpoints of `steps` equal
    segments of the path from the baseline to x. They sum to logit(x) - logit(baseline) up to the
    rule's error (completeness), which shrinks as `steps` grows."""
    if steps < 1:
        raise ValueError(f"integrated gradients: steps must be >= 1, not {steps}")

    def ig(variables, images, baselines, targets):
        def summed(x):
            return _target_logits(model.apply(variables, x, train=False), targets).sum()

        gradient = jax.grad(summed)
        alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
        # one path point at a time: the memory of one batch, however many steps
        total = jax.lax.fori_loop(
            0,
            steps,
            lambda i, acc: acc + gradient(baselines + alphas[i] * (images - baselines)),
            jnp.zeros_like(images),
        )
        return (images - baselines) * total / steps

    return jax.jit(ig)


def attribution_map(attributions: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """[B, H, W, 3] attributions -> [B, H, W] in [0, 1]: the evidence for the class, the positive
    part of each pixel's attribution summed over the channels (absolute values would look alike
    for every class: they follow the painting's difference from the baseline), scaled by its
    `percentile` (a few extreme pixels do not wash the map out)."""
    evidence = np.maximum(attributions.sum(-1), 0.0)
    scale = np.percentile(evidence.reshape(len(evidence), -1), percentile, axis=1)
    return np.clip(evidence / np.maximum(scale, 1e-12)[:, None, None], 0.0, 1.0)


# Integrated gradients' baseline: an image the attributions are measured against, from the
# painting resized to the model's input ([S, S, 3] float32 in [0, 255]), before normalization.
BASELINES = Registry(
    "explain baseline",
    {
        "black": lambda image: np.zeros_like(image),
        "grey": lambda image: np.full_like(image, 127.5),
        # the painting with its detail removed: 8x8 area means, bilinearly upsampled
        "blurred": lambda image: np.asarray(
            tf.image.resize(
                tf.image.resize(image, [8, 8], method="area"), image.shape[:2], method="bilinear"
            )
        ),
    },
)
METHODS = ("gradcam", "integrated_gradients")


class Explanation(NamedTuple):
    path: str
    image: np.ndarray  # [S, S, 3] uint8: the painting as the model saw it
    ranked: list  # [(style, probability)], best first: the Predictor's
    maps: list  # [S, S] in [0, 1] for each ranked style


class Explainer:
    """Heatmaps of a workdir's checkpoint (or of a CV workdir's fold models, averaged) for the
    top-k styles of image files. `method`: gradcam | integrated_gradients (`steps` path points
    from `baseline`, BASELINES)."""

    def __init__(
        self,
        workdir,
        checkpoint: str = "best",
        method: str = "gradcam",
        steps: int = 32,
        baseline: str = "blurred",
        batch_size: int = 8,
    ):
        if method not in METHODS:
            raise ValueError(f"explain method {method!r} is not one of {METHODS}")
        self.method, self.batch_size = method, batch_size
        self.baseline = BASELINES[baseline]
        self.predictor = inference.Predictor(workdir, checkpoint)
        self._models = []
        for m in inference.load_models(workdir, checkpoint):
            model, variables, config = m.model, m.variables, m.config
            size = config.data.image_size
            if method == "gradcam":
                layer = last_feature_map(model, variables, (size, size, 3))
                explain = functools.partial(grad_cam_fn(model, layer), variables)
            else:
                explain = functools.partial(integrated_gradients_fn(model, steps), variables)
            self._models.append((explain, config.data))
        size = self._models[0][1].image_size  # one painting size for every fold
        self._resize = pp.compose(ip.decode_ops(size))

    def _maps(self, explain, normalization, images, targets) -> np.ndarray:
        normalize = pp.NORMALIZATIONS[normalization]
        x = np.asarray(normalize(tf.constant(images, tf.float32)))
        if self.method == "gradcam":
            return np.asarray(explain(x, targets))
        baselines = np.stack([self.baseline(image) for image in images])
        b = np.asarray(normalize(tf.constant(baselines, tf.float32)))
        return attribution_map(np.asarray(explain(x, b, targets)))

    def maps(self, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """[N, S, S] in [0, 1]: the heatmaps of paintings `images` ([N, S, S, 3] in [0, 255], at the
        model's size) for the classes `targets` [N], averaged over the models; in fixed-size
        batches (one compile)."""
        found = np.zeros(images.shape[:3], np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size].astype(np.float32)
            wanted = np.asarray(targets[start : start + self.batch_size], np.int32)
            count, pad = len(chunk), self.batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, 0)])
                wanted = np.concatenate([wanted, np.repeat(wanted[:1], pad)])
            per_model = [
                self._maps(explain, data.normalization, chunk, wanted)[:count]
                for explain, data in self._models
            ]
            found[start : start + count] = np.mean(per_model, axis=0)
        return found

    def explain_files(self, paths, top_k: int = 3) -> tuple[list[Explanation], list[str]]:
        """(an Explanation per readable file, "path: why" of the others)."""
        probabilities, readable, errors = self.predictor.predict_files(paths)
        if not readable:
            return [], errors
        classes = self.predictor.classes
        order = np.argsort(-probabilities, axis=1)[:, : min(top_k, len(classes))]
        images = np.stack(
            [
                self._resize({"image": tf.constant(inference.readable_image(p))})["image"]
                for p in readable
            ]
        )
        maps = [self.maps(images, order[:, k]) for k in range(order.shape[1])]
        explanations = [
            Explanation(
                str(path),
                images[i],
                [(classes[c], float(probabilities[i, c])) for c in order[i]],
                [m[i] for m in maps],
            )
            for i, path in enumerate(readable)
        ]
        return explanations, errors
