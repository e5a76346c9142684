"""Images a visitor might upload that are not paintings, for measuring the "not a painting" gate
(never for fitting it): the sample photos that ship in the wheels of scikit-image, scikit-learn
and matplotlib, and procedural ones (a page of text, charts, flat colours, noise, bare walls, an
empty frame), made from a seed.

`images(seed)` -> [(name, RGB uint8 array)]; `unavailable` lists the sample images this
installation could not load (scikit-image fetches some of its samples from the network, which
the gallery never does).
"""

from __future__ import annotations

import io

import numpy as np

SKIMAGE = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "moon",
    "coins",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "page",
    "text",
    "retina",
    "brick",
    "grass",
    "gravel",
    "clock",
    "checkerboard",
    "colorwheel",
    "logo",
    "cell",
    "microaneurysms",
)
MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")


def _rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        low, high = float(image.min()), float(image.max())
        image = ((image - low) / max(high - low, 1e-9) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return image[..., :3]


def sample_photos() -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """([(name, image)], names that could not be loaded) of the libraries' sample images."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    found, unavailable = [], []
    for name in SKIMAGE:
        try:
            found.append((f"skimage:{name}", _rgb(getattr(skimage.data, name)())))
        except Exception:  # a sample that must be downloaded
            unavailable.append(f"skimage:{name}")
    samples = load_sample_images()
    for name, image in zip(samples.filenames, samples.images):
        found.append((f"sklearn:{name.rsplit('/', 1)[-1]}", _rgb(image)))
    for name in MATPLOTLIB:
        try:
            with matplotlib.cbook.get_sample_data(name) as f:
                found.append((f"matplotlib:{name}", _rgb(Image.open(f).convert("RGB"))))
        except Exception:
            unavailable.append(f"matplotlib:{name}")
    return found, unavailable


def _text_page(rng) -> np.ndarray:
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (600, 800), (250, 250, 245))
    draw = ImageDraw.Draw(page)
    words = ["the", "gallery", "painting", "light", "museum", "visitor", "colour", "canvas"]
    for row in range(40, 760, 22):
        line = " ".join(rng.choice(words, 9))
        draw.text((40, row), line, fill=(20, 20, 20))
    return np.asarray(page)


def _chart(rng, kind: str) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=80)
    x = np.arange(12)
    if kind == "bars":
        axes.bar(x, rng.uniform(1, 10, 12))
    else:
        axes.plot(x, np.cumsum(rng.normal(0, 1, 12)), marker="o")
    axes.set_title("monthly visitors")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _empty_frame(rng) -> np.ndarray:
    from artjax import configs
    from artjax.data import photos

    config = configs.base_config()
    wall = np.full((256, 256, 3), rng.uniform(170, 230), np.uint8)  # the wall inside the frame
    config.photos.width, config.photos.height = 800, 600
    config.photos.neighbours_probability = config.photos.label_probability = 0.0
    return photos.photograph(wall, rng, config).image


def _bare_wall(rng) -> np.ndarray:
    from artjax import configs
    from artjax.data import photos

    p = configs.base_config().photos
    wall = photos.wall(p, rng, 800, 600)
    return photos.photometric(wall.astype(np.uint8), rng, p)


def procedural(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Seeded images that are not paintings: text, charts, flat colours, noise, walls, a frame."""
    rng = np.random.default_rng(seed)
    return [
        ("procedural:text_page", _text_page(rng)),
        ("procedural:bar_chart", _chart(rng, "bars")),
        ("procedural:line_chart", _chart(rng, "line")),
        ("procedural:flat_grey", np.full((240, 300, 3), 128, np.uint8)),
        ("procedural:flat_red", np.broadcast_to(np.uint8([200, 30, 30]), (240, 300, 3)).copy()),
        ("procedural:noise_300x240", rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)),
        (
            "procedural:grey_noise",
            np.repeat(rng.integers(0, 256, (240, 300, 1), dtype=np.uint8), 3, -1),
        ),
        ("procedural:bare_wall", _bare_wall(rng)),
        ("procedural:empty_frame", _empty_frame(rng)),
    ]


def images(seed: int = 0) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """([(name, image)], unavailable sample names): the sample photos, then the procedural ones."""
    found, unavailable = sample_photos()
    return found + procedural(seed), unavailable
