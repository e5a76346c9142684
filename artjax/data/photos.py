"""Gallery photos of paintings, simulated: a painting in its frame on a wall, photographed by a
visitor's phone at an angle, under uneven light, with glare, blur, sensor noise and JPEG.

`photograph(painting, rng, config)` returns the photo and the painting's four corners in it
(clockwise from the top left, (x, y) in the photo's pixels), which is what the finder
(`artjax.finder`) is measured against. The scene lies in one plane (the wall): the framed
painting, parts of neighbouring frames and a wall label are drawn flat, then put in the photo by
one homography, the projection of the wall turned by a yaw, a pitch and a camera roll.
`photometric` applies the photo's light and sensor effects alone to an image (the training views
of robust heads), and `jitter_corners` the small perspective change a found outline leaves.

Every draw comes from the `np.random.Generator` passed in, so a seed gives the same photo; every
parameter lives in the config's `photos` section (`artjax.configs.photos_config`), with named
`scenes` ("wall", "close") as overrides.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import ml_collections
import numpy as np


class Photo(NamedTuple):
    image: np.ndarray  # [H, W, 3] uint8
    corners: np.ndarray  # [4, 2] float32: the painting's corners (x, y), clockwise from top left


def scene_config(config, scene: str = "") -> ml_collections.ConfigDict:
    """The `photos` section with the named scene's overrides ("": the section as it is); an
    unknown scene is an error that lists the valid ones."""
    photos = config.photos if "photos" in config else config
    if not scene:
        return photos
    if scene not in photos.scenes:
        raise ValueError(f"photos scene {scene!r}: valid scenes are {sorted(photos.scenes)}")
    found = photos.copy_and_resolve_references()
    found.update(photos.scenes[scene].to_dict())
    return found


def _uniform(rng, bounds) -> float:
    low, high = bounds
    return float(rng.uniform(low, high))


def _frame_colour(rng) -> np.ndarray:
    """Gilt, dark wood, black or white."""
    palette = np.array([[176, 141, 72], [92, 60, 35], [28, 26, 24], [232, 228, 218]], np.float32)
    return palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)


def _framed(painting: np.ndarray, frame_px: int, rng) -> np.ndarray:
    """The painting inside a frame of `frame_px` with a darker inner bevel and a lit outer edge."""
    colour = _frame_colour(rng)
    h, w = painting.shape[:2]
    out = np.empty((h + 2 * frame_px, w + 2 * frame_px, 3), np.float32)
    out[:] = colour
    bevel = max(1, frame_px // 4)
    out[frame_px - bevel : h + frame_px + bevel, frame_px - bevel : w + frame_px + bevel] = (
        colour * 0.6
    )
    out[: max(1, bevel // 2)] *= 1.15
    out[frame_px : frame_px + h, frame_px : frame_px + w] = painting
    return out


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (
        f(math.radians(a)) for a in (yaw, pitch, roll) for f in (math.cos, math.sin)
    )
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def _wall_to_photo(p, rng, painting_wh, photo_wh, share: float) -> np.ndarray:
    """The homography from flat wall coordinates (the painting's pixels, origin at its top left)
    to the photo: the wall turned by a drawn yaw, pitch and roll, seen by a pinhole camera, then
    scaled so that the painting's height is the drawn share of the photo's and placed at a random
    position with the painting inside the photo."""
    (pw, ph), (width, height) = painting_wh, photo_wh
    yaw = rng.uniform(-1, 1) * p.yaw_degrees
    pitch = rng.uniform(-1, 1) * p.pitch_degrees
    roll = rng.uniform(-1, 1) * p.roll_degrees
    rotation = _rotation(yaw, pitch, roll)
    # the wall plane at unit distance, the painting centred on the optical axis
    focal, distance = p.focal * width, 3.0 * max(pw, ph)
    intrinsics = np.array([[focal, 0, 0], [0, focal, 0], [0, 0, 1]])
    centre = np.array([[1, 0, -pw / 2], [0, 1, -ph / 2], [0, 0, 1]])
    # a wall point (x, y, 1) -> camera: rotation @ (x, y, 0) + (0, 0, distance)
    extrinsic = np.column_stack([rotation[:, 0], rotation[:, 1], [0, 0, distance]])
    projected = intrinsics @ extrinsic @ centre
    corners = cv2.perspectiveTransform(
        np.array([[[0, 0], [pw, 0], [pw, ph], [0, ph]]], np.float64), projected
    )[0]
    # scale: the painting's extent in the photo is the drawn share of its height (and fits)
    extent = corners.max(0) - corners.min(0)
    scale = min(share * height / extent[1], 0.97 * width / extent[0], 0.97 * height / extent[1])
    size = extent * scale
    low = np.array([width, height]) - size
    offset = rng.uniform(0.0, 1.0, 2) * low - corners.min(0) * scale
    place = np.array([[scale, 0, offset[0]], [0, scale, offset[1]], [0, 0, 1]])
    return place @ projected


def wall(p, rng, width: int, height: int) -> np.ndarray:
    """A bare wall: an even colour with a faint plaster texture (float, 0-255)."""
    base = rng.uniform(150, 235) * rng.uniform(0.92, 1.05, 3)
    # a faint plaster texture: low-resolution noise, upsampled
    texture = rng.normal(0, 4, (height // 40 + 2, width // 40 + 2, 1)).astype(np.float32)
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    return np.clip(base.astype(np.float32) + texture, 0, 255)


def _neighbour(rng, ph: int) -> np.ndarray:
    """A neighbouring framed picture: a blurred field of colours (no painting of the data set)."""
    h = int(ph * rng.uniform(0.5, 1.1))
    w = int(h * rng.uniform(0.6, 1.5))
    field = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    return _framed(np.clip(field, 0, 255), max(2, int(0.06 * max(h, w))), rng)


def _label(rng, ph: int) -> np.ndarray:
    """A small white wall label with a few dark lines of "text"."""
    h = max(8, int(ph * rng.uniform(0.08, 0.14)))
    w = int(h * rng.uniform(1.4, 2.2))
    label = np.full((h, w, 3), rng.uniform(225, 250), np.float32)
    rows = max(2, h // 6)
    for r in range(1, min(4, rows)):
        y = int(r * h / 4)
        label[y : y + max(1, h // 12), int(0.1 * w) : int(rng.uniform(0.5, 0.9) * w)] = 40
    return label


def _paste(canvas, mask, item, x: int, y: int) -> None:
    """`item` into the flat canvas at (x, y) (clipped), its pixels marked in `mask`."""
    h, w = item.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    canvas[y0:y1, x0:x1] = item[y0 - y : y1 - y, x0 - x : x1 - x]
    mask[y0:y1, x0:x1] = 1.0


def photograph(painting: np.ndarray, rng: np.random.Generator, config) -> Photo:
    """A simulated photo of `painting` ([h, w, 3] uint8) in a frame on a wall, and its corners.
    `config`: a config with a `photos` section, or that section (see `scene_config`)."""
    p = config.photos if "photos" in config else config
    width, height = int(p.width), int(p.height)
    painting = np.asarray(painting, np.float32)
    # Work on the painting at about its size in the photo, so the warp neither blurs nor aliases.
    share = _uniform(rng, p.scale)
    ratio = share * height / painting.shape[0]
    ph, pw = max(8, round(painting.shape[0] * ratio)), max(8, round(painting.shape[1] * ratio))
    painting = cv2.resize(painting, (pw, ph), interpolation=cv2.INTER_LINEAR)
    frame_px = max(2, round(_uniform(rng, p.frame_width) * max(pw, ph)))
    framed = _framed(painting, frame_px, rng)

    # The flat scene around the painting: a margin of half its size on every side.
    margin_x, margin_y = pw // 2 + frame_px, ph // 2 + frame_px
    canvas = np.zeros((ph + 2 * margin_y, pw + 2 * margin_x, 3), np.float32)
    mask = np.zeros(canvas.shape[:2], np.float32)
    origin = np.array([margin_x, margin_y], np.float64)  # the painting's top left on the canvas
    if rng.uniform() < p.neighbours_probability:
        for side in (-1, 1):
            if rng.uniform() < 0.7:
                item = _neighbour(rng, ph)
                gap = int(rng.uniform(0.15, 0.35) * pw)
                x = (
                    int(origin[0]) - frame_px - gap - item.shape[1]
                    if side < 0
                    else int(origin[0]) + pw + frame_px + gap
                )
                y = int(origin[1] + ph / 2 - item.shape[0] / 2 + rng.uniform(-0.1, 0.1) * ph)
                _paste(canvas, mask, item, x, y)
    if rng.uniform() < p.label_probability:
        item = _label(rng, ph)
        x = int(origin[0]) + pw + frame_px + int(0.05 * pw)
        y = int(origin[1]) + ph - item.shape[0]
        _paste(canvas, mask, item, x, y)
    _paste(canvas, mask, framed, int(origin[0]) - frame_px, int(origin[1]) - frame_px)

    to_photo = _wall_to_photo(p, rng, (pw, ph), (width, height), share)
    shift = np.array([[1, 0, -origin[0]], [0, 1, -origin[1]], [0, 0, 1]])
    homography = to_photo @ shift
    warped = cv2.warpPerspective(canvas, homography, (width, height), flags=cv2.INTER_LINEAR)
    coverage = cv2.warpPerspective(mask, homography, (width, height), flags=cv2.INTER_LINEAR)
    photo = wall(p, rng, width, height)
    photo = photo * (1 - coverage[..., None]) + warped * coverage[..., None]
    corners = cv2.perspectiveTransform(
        np.array([[[0, 0], [pw, 0], [pw, ph], [0, ph]]], np.float64), to_photo
    )[0].astype(np.float32)
    image = _light_and_sensor(photo, p, rng)
    if p.max_output_side and max(width, height) > p.max_output_side:
        factor = p.max_output_side / max(width, height)
        size = (round(width * factor), round(height * factor))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        corners = corners * np.array(size, np.float32) / np.array([width, height], np.float32)
    return Photo(image, corners)


def _light_and_sensor(image: np.ndarray, p, rng) -> np.ndarray:
    """Uneven light and a colour cast, glare, blur, sensor noise and JPEG, on a float image in
    0-255; uint8 out. Blur and glare are scaled to the image's size (given at 1600 px width)."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs / max(width - 1, 1) - 0.5, ys / max(height - 1, 1) - 0.5
    direction = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(-1, 1) * p.light_gradient
    gain = 1 + slope * (xs * math.cos(direction) + ys * math.sin(direction)) * 2
    gain -= rng.uniform(0, p.light_gradient) * (xs**2 + ys**2)  # falloff towards the corners
    cast = 1 + rng.uniform(-1, 1, 3) * p.colour_cast
    image = image * gain[..., None] * cast.astype(np.float32)
    if rng.uniform() < p.glare_probability:
        cx, cy = rng.uniform(-0.35, 0.35, 2)
        radius = _uniform(rng, p.glare_radius) * math.hypot(1, height / width)
        spot = np.exp(-((xs - cx) ** 2 + ((ys - cy) * height / width) ** 2) / (2 * radius**2))
        image = image + 255 * _uniform(rng, p.glare_strength) * spot[..., None]
    sigma = _uniform(rng, p.blur_sigma) * width / 1600
    if sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0, _uniform(rng, p.noise_sigma), image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    quality = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()


def photometric(image: np.ndarray, rng: np.random.Generator, config) -> np.ndarray:
    """The photo's light and sensor effects alone (uneven light, colour cast, glare, blur, noise,
    JPEG) on an image ([h, w, 3] uint8), as a phone photo of it would show them; uint8 out."""
    p = config.photos if "photos" in config else config
    return _light_and_sensor(np.asarray(image, np.float32), p, rng)


def jitter_corners(image: np.ndarray, rng: np.random.Generator, config) -> np.ndarray:
    """The image re-warped as if its outline had been found with each corner up to
    `photos.jitter` of the sides off: the small perspective change a straightened photo keeps."""
    p = config.photos if "photos" in config else config
    h, w = image.shape[:2]
    source = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    moved = source + rng.uniform(-1, 1, (4, 2)).astype(np.float32) * p.jitter * np.array([w, h])
    matrix = cv2.getPerspectiveTransform(moved.astype(np.float32), source)
    return cv2.warpPerspective(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def photo_view(image: np.ndarray, rng: np.random.Generator, config) -> np.ndarray:
    """A robust training view: `jitter_corners`, then `photometric`."""
    return photometric(jitter_corners(image, rng, config), rng, config)
