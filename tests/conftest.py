"""Shared fixtures. Four fake CPU devices for every test (set before JAX is imported); freed host
memory kept in the process (artjax.host_memory), as the entry points do.

Real paintings come from $ARTJAX_REAL_DATA (default: ../shared/data/best_artworks from the project
root). Without them, tests that need them skip, except under CI=true, where that is a failure.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from artjax import host_memory  # noqa: E402

host_memory.keep_freed_memory()  # as the entry points do: ~30% off every CPU train step

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA = pathlib.Path(
    os.environ.get("ARTJAX_REAL_DATA", PROJECT_ROOT.parent / "shared" / "data" / "best_artworks")
)


@pytest.fixture(scope="session")
def real_data_root() -> pathlib.Path:
    if not (REAL_DATA / "artists.csv").is_file():
        message = f"real paintings not found at {REAL_DATA} (set ARTJAX_REAL_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REAL_DATA


@pytest.fixture(scope="session")
def real_builder(real_data_root, tmp_path_factory):
    from artjax.data import best_artworks

    return best_artworks.prepare(real_data_root, tmp_path_factory.mktemp("prepared_real"))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from artjax.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), images_per_artist=8, size=48)


def make_config(root, prepared_dir, **data_overrides):
    from artjax import configs

    config = configs.base_config()
    config.data.root = str(root)
    config.data.prepared_dir = str(prepared_dir)
    config.data.image_size = 32
    config.batch_size = 8
    config.eval_batch_size = 8
    config.data.update(data_overrides)
    return config


def make_tiny_port(model_config, path):
    """(path, variables): a ported checkpoint of `model_config`'s (tiny) ResNet, as `python -m
    artjax.port` writes them, with weights unlike any fresh initialization."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from artjax import models
    from artjax.models import porting

    model = models.create_model(model_config, 1000)
    variables = model.init(jax.random.PRNGKey(7), jnp.zeros((1, 32, 32, 3)))
    variables = jax.tree.map(lambda x: np.asarray(x) + 0.01, variables)
    meta = dict(
        source="torchvision",
        normalization="imagenet",
        input_size=32,
        num_classes=1000,
        has_head=True,
        architecture={k: model_config[k] for k in porting.ARCHITECTURE_KEYS["resnet"]},
    )
    return porting.save(path, variables, meta), variables
