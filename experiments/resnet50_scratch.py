"""ResNet50 (torchvision v1.5 layout) trained from scratch: the study's 53% row (weighted: 12%).

  python -m artjax.train --config experiments/resnet50_scratch.py --workdir
  checkpoints/resnet50_scratch \\
      --config.data.root=../shared/data/best_artworks

Variants (comma-separated): `weighted` (class-weighted loss), `gpu` (the study's settings on an
accelerator: 200 px, batch 16, 30 epochs, bfloat16 compute), `synthetic` (embedded synthetic set,
tiny run). On a 2-core CPU a 200 px epoch costs about 3x a 112 px one (RESULTS.md gives the rows
measured at 112 px and their epoch times); experiments/run_study_on_gpu.sh runs the study's
experiments on one accelerator.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "gpu", "synthetic"))
    config = configs.base_config()
    config.model.name = "resnet"
    config.model.depth = 50
    config.model.variant = "v1.5"
    config.model.dropout_rate = 0.0
    config.data.image_size = 200  # the study's
    config.num_epochs = 30
    config.batch_size = 16  # the study's
    config.eval_batch_size = 32
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 2.0
    config.optimizer.weight_decay = 1e-4
    config.class_weighted = "weighted" in variants
    if "gpu" in variants:
        # Parameters and the optimizer state stay float32; activations and convolutions run in
        # bfloat16 (the accelerators' fast path).
        config.model.dtype = "bfloat16"
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
