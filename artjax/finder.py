"""Finding the painting in a photo and straightening it (classical: OpenCV edges, contours and
polygon approximation; parameters in the config's `finder` section).

The photo is searched at `finder.work_side`. Convex four-sided outlines of its edges (Canny,
closed), between `min_area` and `max_area` of the photo, are candidates; so is, for each, where
the even bands along its sides end (a frame whose inner edge made no outline of its own). The
painting is the candidate with the busiest paint just inside against the calmest photo just
outside (mean gradient magnitude in a `band` on each side, the outside at most
`max_outside_edges` of the inside), larger ones weighing more. Where none qualifies, nothing is
found and the whole image is the painting, so a clean reproduction passes unchanged (a painted
rectangle inside a painting has busy paint around it, not a frame or a wall).

`straighten` warps the found outline to a rectangle of the painting's own aspect ratio (the mean
lengths of opposite sides), at most `output_side` pixels on its longer side.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image


class Found(NamedTuple):
    corners: np.ndarray  # [4, 2] float32 (x, y) in the image's pixels, clockwise from top left
    found: bool  # False: no painting outline; `corners` is the whole image
    how: str  # "frame" (nested outlines), "outline" (one outline on a calm wall) or "whole"


def whole_image(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)


def order_corners(points: np.ndarray) -> np.ndarray:
    """Four points clockwise from the top left (image coordinates, y down): the top left has the
    smallest x + y; the rest follow by angle around the centre."""
    points = np.asarray(points, np.float32).reshape(4, 2)
    centre = points.mean(0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    clockwise = points[np.argsort(angles)]  # y down: increasing angle is clockwise on screen
    start = int(np.argmin(clockwise.sum(1)))
    return np.roll(clockwise, -start, axis=0)


def quad_area(corners: np.ndarray) -> float:
    return float(abs(cv2.contourArea(np.asarray(corners, np.float32).reshape(-1, 1, 2))))


def _quad_of(contour, finder) -> np.ndarray | None:
    """The contour's convex hull as four corners, where four fit it (their area at least 90% of
    the hull's): the first polygon approximation, at 1-4 times `approx_epsilon`, with four."""
    hull = cv2.convexHull(contour)
    perimeter, hull_area = cv2.arcLength(hull, True), cv2.contourArea(hull)
    for factor in (1, 2, 3, 4):
        polygon = cv2.approxPolyDP(hull, factor * finder.approx_epsilon * perimeter, True)
        if len(polygon) < 4:
            return None
        if len(polygon) == 4:
            if cv2.isContourConvex(polygon) and quad_area(polygon) >= 0.9 * hull_area:
                return order_corners(polygon)
            return None
    return None


def _quads(edges: np.ndarray, finder) -> list[np.ndarray]:
    """Convex four-sided outlines of the edge map between min_area and max_area of it."""
    area = edges.shape[0] * edges.shape[1]
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours:
        if cv2.contourArea(cv2.convexHull(contour)) < finder.min_area * area:
            continue
        quad = _quad_of(contour, finder)
        if quad is not None and finder.min_area <= quad_area(quad) / area <= finder.max_area:
            found.append(quad)
    return found


def _inner_edge(gray: np.ndarray, quad: np.ndarray, finder) -> np.ndarray | None:
    """The painting inside a frame's outer outline `quad`, or None where there is no frame: the
    outline straightened; where the band along every side is even (its spread along the side at
    most `frame_evenness` of the inside's), each side's cut is where that evenness ends (bevels
    and mats are even too), within `frame_depth` of the side, at the strongest edge there."""
    side = 200
    target = whole_image(side, side)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    flat = cv2.warpPerspective(gray, matrix, (side, side), flags=cv2.INTER_AREA).astype(np.float32)
    depth = max(4, int(finder.frame_depth * side))
    lo, hi = int(0.2 * side), int(0.8 * side)
    inside_spread = float(flat[depth:-depth, depth:-depth].std()) + 1e-3
    cuts = []
    for turns in range(4):  # top, right, bottom, left: each side's rows from the outside in
        band = np.rot90(flat, turns)[:depth, lo:hi]
        spread = band.std(axis=1)
        if float(spread[1:3].mean()) > finder.frame_evenness * inside_spread:
            return None
        uneven = np.nonzero(spread[1:] > finder.frame_evenness * inside_spread)[0]
        end = int(uneven[0]) + 2 if len(uneven) else depth - 1
        profile = np.abs(np.diff(band.mean(axis=1)))[: end + 1]
        cuts.append(int(np.argmax(profile)) + 1)
    top, right, bottom, left = cuts
    inner = np.array(
        [[left, top], [side - right, top], [side - right, side - bottom], [left, side - bottom]],
        np.float32,
    )
    back = cv2.perspectiveTransform(inner[None], np.linalg.inv(matrix))[0]
    return order_corners(back)


def _contrast(energy: np.ndarray, quad: np.ndarray, finder) -> float | None:
    """How much busier the paint is just inside the outline than the photo just outside it: the
    mean gradient magnitude (`energy`) of a ring inside minus that of a band outside (each
    `band` of the outline's size, a few pixels off the outline itself); None where the outside
    is not calm (at most `max_outside_edges` of the inside's), as inside a painting."""
    width, gap = max(2, int(finder.band * np.sqrt(quad_area(quad)))), 3
    # masks within the outline's box grown by the band, not over the whole photo (speed)
    low = np.maximum(np.floor(quad.min(0)).astype(int) - width - gap - 2, 0)
    high = np.minimum(np.ceil(quad.max(0)).astype(int) + width + gap + 2, energy.shape[::-1])
    energy = energy[low[1] : high[1], low[0] : high[0]]
    inside = np.zeros(energy.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(quad - low).astype(np.int32), 1)
    # a (2n+1)-square kernel once: n iterations of a 3x3 square, at one pass's cost
    square = lambda n: np.ones((2 * n + 1, 2 * n + 1), np.uint8)
    near_in = cv2.erode(inside, square(gap))
    ring = (near_in & (1 - cv2.erode(near_in, square(width)))).astype(bool)
    near_out = cv2.dilate(inside, square(gap))
    band = (cv2.dilate(near_out, square(width)) & (1 - near_out)).astype(bool)
    if not ring.any() or not band.any():
        return None
    within, outside = float(energy[ring].mean()), float(energy[band].mean())
    if within <= 0 or outside > finder.max_outside_edges * within:
        return None
    return within - outside


def _energy(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the lightly blurred grey image."""
    blurred = cv2.GaussianBlur(gray, (3, 3), 0).astype(np.float32)
    return cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))


def _edges(gray: np.ndarray) -> np.ndarray:
    """Canny at thresholds from the median intensity, closed so that outlines join up."""
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    median = float(np.median(blurred))
    edges = cv2.Canny(blurred, int(max(10, 0.66 * median * 0.5)), int(max(30, 1.33 * median * 0.5)))
    return cv2.dilate(edges, np.ones((3, 3), np.uint8))


def find(image: np.ndarray, finder) -> Found:
    """The main painting's outline in an RGB image [H, W, 3] uint8, or the whole image."""
    height, width = image.shape[:2]
    scale = min(1.0, finder.work_side / max(height, width))
    small = (
        cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR
        )
        if scale < 1
        else image
    )
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    edges = _edges(gray)
    # Outlines cut by the photo's border close along it; but a painting that touches the border
    # would then merge with it: both edge maps give candidates.
    bordered = edges.copy()
    bordered[[0, -1], :] = bordered[:, [0, -1]] = 255
    quads = sorted(_quads(edges, finder) + _quads(bordered, finder), key=quad_area, reverse=True)
    # The painting: the outline with the busiest paint inside against the calmest photo outside
    # (a frame's outer edge has frame inside; a rectangle within the paint has paint outside).
    # A frame's inner edge may make no outline of its own (it merges with a bevel's): each
    # outline whose sides are even bands is also tried at where the evenness ends.
    area = float(edges.shape[0] * edges.shape[1])
    energy = _energy(gray)
    candidates = [(q, "outline") for q in quads]
    candidates += [(r, "frame") for q in quads if (r := _inner_edge(gray, q, finder)) is not None]
    scored = [
        (c * np.sqrt(quad_area(q) / area), q, kind)  # the main painting: larger ones weigh more
        for q, kind in candidates
        if quad_area(q) >= finder.min_area * area
        and (c := _contrast(energy, q, finder)) is not None
    ]
    found, how = None, "whole"
    if scored:
        _, found, how = max(scored, key=lambda s: s[0])
    if found is None:
        return Found(whole_image(width, height), False, how)
    factor = np.array([width / small.shape[1], height / small.shape[0]], np.float32)
    return Found(order_corners(found * factor), True, how)


def straightened_size(corners: np.ndarray, output_side: int) -> tuple[int, int]:
    """(width, height) of the straightened painting: the mean lengths of opposite sides, scaled
    so the longer side is at most `output_side`."""
    tl, tr, br, bl = np.asarray(corners, np.float32)
    width = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    factor = min(1.0, output_side / max(width, height, 1.0))
    return max(1, round(width * factor)), max(1, round(height * factor))


def straighten(image: np.ndarray, corners: np.ndarray, output_side: int) -> np.ndarray:
    """The outlined painting warped to a rectangle of its own aspect ratio."""
    width, height = straightened_size(corners, output_side)
    target = whole_image(width, height)
    matrix = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_AREA)


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex quadrilaterals."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    overlap, _ = cv2.intersectConvexConvex(a.reshape(-1, 1, 2), b.reshape(-1, 1, 2))
    union = quad_area(a) + quad_area(b) - overlap
    return float(overlap / union) if union > 0 else 0.0


def corner_error(found: np.ndarray, true: np.ndarray) -> float:
    """Mean distance between corresponding corners, as a share of the true outline's diagonal."""
    found, true = np.asarray(found, np.float32), np.asarray(true, np.float32)
    diagonal = np.linalg.norm(true[2] - true[0])
    return float(np.linalg.norm(found - true, axis=1).mean() / max(diagonal, 1e-6))


class Straightened(NamedTuple):
    image: np.ndarray  # the painting the model judges: straightened, or the image unchanged
    found: Found


def painting_of(image: np.ndarray, finder) -> Straightened:
    """The straightened painting of a photo, or the image unchanged where none is found."""
    found = find(image, finder)
    if not found.found:
        return Straightened(image, found)
    return Straightened(straighten(image, found.corners, finder.output_side), found)


class Looked(NamedTuple):
    encoded: bytes  # what the model judges: the straightened painting (BMP), or the bytes given
    found: Found
    painting: np.ndarray  # the judged image, RGB [h, w, 3] uint8


def painting_bytes(encoded: bytes, finder) -> Looked:
    """JPEG or PNG bytes (upright) -> the bytes the model should judge: the straightened painting
    as BMP where an outline is found, else `encoded` itself (a clean reproduction passes through
    unchanged, to the byte)."""
    with Image.open(io.BytesIO(encoded)) as opened:
        image = np.asarray(opened if opened.mode == "RGB" else opened.convert("RGB"))
    straightened = painting_of(image, finder)
    if not straightened.found.found:
        return Looked(encoded, straightened.found, image)
    # BMP: lossless like PNG, without its compression's tens of milliseconds (TensorFlow's
    # decode_image, which the model's preprocessing uses, reads it)
    buffer = io.BytesIO()
    Image.fromarray(straightened.image).save(buffer, "BMP")
    return Looked(buffer.getvalue(), straightened.found, straightened.image)
