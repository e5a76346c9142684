"""`python -m artjax.bench photos`: held-out paintings clean, photographed on a wall by the
simulator (`artjax.data.photos`, each of `photos.scenes`), and photographed then found and
straightened (`artjax.finder`), side by side through the same model; the finder's outline against
the true one; the gate's flags on paintings, photos and images that are not paintings
(`artjax.data.not_paintings`); and the time finding and straightening adds per photo.

A leave-artists-out CV workdir scores each fold's held-out artists with that fold's model (and its
gate, `artjax.fit_gate`): painters the model never saw. A training workdir scores its fixed test
split (seen painters, unseen paintings). The listed share is the share of an artist's paintings
whose top-1 style is one of the genres their row lists (top-3: one of the three), macro over
artists, as `artjax.evaluate --images` reports it.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from artjax import checkpointing, finder, train_state
from artjax.data import catalog, not_paintings, photos
from artjax.data import input_pipeline as ip
from artjax.serving import inference


def _units(workdir) -> list[tuple[str, list[str]]]:
    """(model workdir, the files it is scored on) of a CV (held-out artists) or of a run (its
    fixed test split)."""
    if checkpointing.is_cv_workdir(workdir):
        from artjax import crossval

        return [
            (str(d), list(crossval.load_heldout(d)[0].filenames))
            for d in checkpointing.fold_workdirs(workdir)
        ]
    config, _, _, _ = train_state.load_run(workdir, "best")
    data = ip.prepare_data(config.data, config.seed)
    return [(str(workdir), sorted(data.members["test"]))]


def _encoded(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    """An image as a visitor uploads it: a phone's JPEG (quality 92), or a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _chosen(files, artists, per_artist: int, rng) -> list[int]:
    """Up to `per_artist` paintings of each artist, drawn from the seed."""
    chosen = []
    for artist in sorted(set(artists)):
        theirs = [i for i, a in enumerate(artists) if a == artist]
        take = min(per_artist, len(theirs)) if per_artist else len(theirs)
        chosen += sorted(rng.choice(theirs, take, replace=False).tolist())
    return chosen


def _scores(predictor, encoded: list[bytes], artists, artist_genres) -> dict:
    images = np.stack([predictor.preprocess(e) for e in encoded])
    found = [predictor.all_outputs_of(images[i : i + 32]) for i in range(0, len(images), 32)]
    probabilities = np.concatenate([p for p, _, _ in found])
    order = np.argsort(-probabilities, 1)
    classes = predictor.classes
    top1, top3 = {}, {}
    for artist, ranked in zip(artists, order):
        listed = set(artist_genres.get(artist, ())) & set(classes)
        if not listed:
            continue
        top1.setdefault(artist, []).append(classes[ranked[0]] in listed)
        top3.setdefault(artist, []).append(bool({classes[i] for i in ranked[:3]} & listed))
    out = dict(top1=top1, top3=top3, flagged=None)
    if predictor.gate is not None:
        distances = predictor.gate.distances(np.concatenate([m for _, _, m in found]))
        out["flagged"] = (distances > predictor.gate.threshold).tolist()
    return out


def run(workdir, config, scenes, per_artist: int, seed: int = 0) -> dict:
    """The side-by-side figures (see the module's docstring) of `workdir`; `config` holds the
    simulator's and the finder's settings."""
    units = _units(workdir)
    rng = np.random.default_rng(seed)
    conditions = ["clean"] + [c for s in scenes for c in (s, f"{s}_straightened")]
    top1 = {c: {} for c in conditions}
    top3 = {c: {} for c in conditions}
    flagged = {c: [] for c in conditions}
    outline = {s: dict(iou=[], corner_error=[], found=[]) for s in scenes}
    seconds, not_painting = [], []
    sample, unavailable = not_paintings.images(seed)
    first_config = None
    for unit, files in units:
        predictor = inference.Predictor(unit, find_painting=False)
        run_config, _, _, _ = train_state.load_run(unit, "best")
        first_config = first_config or run_config
        image_dir, _ = catalog.find_image_dir(ip.resolve_root(run_config.data)[0])
        data = ip.prepare_data(run_config.data, run_config.seed)
        artists = ip.artists_of(data, files)
        picked = _chosen(files, artists, per_artist, rng)
        encoded = {c: [] for c in conditions}
        for i in picked:
            raw = inference.readable_image(image_dir / files[i])
            encoded["clean"].append(raw)
            painting = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
            for scene in scenes:
                draw = np.random.default_rng([seed, i, len(scene), sum(map(ord, scene))])
                photo = photos.photograph(painting, draw, photos.scene_config(config, scene))
                as_uploaded = _encoded(photo.image)
                encoded[scene].append(as_uploaded)
                started = time.perf_counter()
                looked = finder.painting_bytes(as_uploaded, config.finder)
                seconds.append(time.perf_counter() - started)
                encoded[f"{scene}_straightened"].append(looked.encoded)
                outline[scene]["iou"].append(finder.quad_iou(looked.found.corners, photo.corners))
                outline[scene]["corner_error"].append(
                    finder.corner_error(looked.found.corners, photo.corners)
                )
                outline[scene]["found"].append(looked.found.found)
        chosen_artists = [artists[i] for i in picked]
        for condition in conditions:
            found = _scores(predictor, encoded[condition], chosen_artists, data.artist_genres)
            for artist, hits in found["top1"].items():
                top1[condition].setdefault(artist, []).extend(hits)
            for artist, hits in found["top3"].items():
                top3[condition].setdefault(artist, []).extend(hits)
            if found["flagged"] is not None:
                flagged[condition] += found["flagged"]
        # what a visitor uploads that is not a painting, as the product sees it (finder on)
        if predictor.gate is not None:
            predictor.find_painting = True
            for name, image in sample:
                described = predictor.describe_encoded(_encoded(image, "PNG"))
                not_painting.append(
                    dict(
                        unit=unit,
                        image=name,
                        flagged=described.painting is False,
                        distance=described.painting_distance,
                        top=described.ranked[0],
                    )
                )

    def macro(per_artist):
        return float(np.mean([np.mean(v) for v in per_artist.values()])) if per_artist else None

    rows = {
        c: dict(
            listed_top1=macro(top1[c]),
            listed_top3=macro(top3[c]),
            paintings=sum(len(v) for v in top1[c].values()),
            artists=len(top1[c]),
            flagged=float(np.mean(flagged[c])) if flagged[c] else None,
        )
        for c in conditions
    }
    for c in conditions:
        if rows["clean"]["listed_top1"]:
            rows[c]["of_clean"] = rows[c]["listed_top1"] / rows["clean"]["listed_top1"]
    return dict(
        workdir=str(workdir),
        conditions=rows,
        finder={
            s: dict(
                iou_mean=float(np.mean(v["iou"])),
                iou_median=float(np.median(v["iou"])),
                corner_error_median=float(np.median(v["corner_error"])),
                found=float(np.mean(v["found"])),
            )
            for s, v in outline.items()
        },
        finder_ms=dict(
            median=1000 * float(np.median(seconds)) if seconds else None,
            p90=1000 * float(np.percentile(seconds, 90)) if seconds else None,
            photo_size=[int(config.photos.width), int(config.photos.height)],
        ),
        not_paintings=dict(
            images=len(sample),
            unavailable=unavailable,
            flagged=float(np.mean([n["flagged"] for n in not_painting])) if not_painting else None,
            missed=sorted({n["image"] for n in not_painting if not n["flagged"]}),
            each=not_painting,
        ),
        per_artist=per_artist,
        seed=seed,
    )


def markdown(report: dict) -> str:
    def f(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [
        f"`{report['workdir']}`: {report['per_artist'] or 'all'} paintings per artist, seed "
        f"{report['seed']}",
        "",
        "| condition | paintings | listed top-1 | x clean | listed top-3 | gate: flagged |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["conditions"].items():
        lines.append(
            f"| {name} | {row['paintings']} | {f(row['listed_top1'])} | "
            f"{f(row.get('of_clean'), 2)} | {f(row['listed_top3'])} | {f(row['flagged'])} |"
        )
    lines += ["", "| scene | outline found | IoU mean | IoU median | corner error median |"]
    lines.append("|---|---:|---:|---:|---:|")
    for scene, v in report["finder"].items():
        lines.append(
            f"| {scene} | {f(v['found'])} | {f(v['iou_mean'])} | {f(v['iou_median'])} | "
            f"{f(v['corner_error_median'], 4)} |"
        )
    ms = report["finder_ms"]
    lines += [
        "",
        f"Finding and straightening a {ms['photo_size'][0]}x{ms['photo_size'][1]} photo: "
        f"median {f(ms['median'], 1)} ms, p90 {f(ms['p90'], 1)} ms.",
    ]
    n = report["not_paintings"]
    lines.append(
        f"Not paintings: {n['images']} images, flagged {f(n['flagged'])} (over every model); "
        f"missed: {', '.join(n['missed']) or 'none'}"
        + (f"; unavailable here: {', '.join(n['unavailable'])}" if n["unavailable"] else "")
    )
    return "\n".join(lines)


def finder_timing(config, scenes, count: int, seed: int = 0) -> dict:
    """The finder alone (no model): per scene, `count` paintings of `config.data.root`
    photographed, then decoded, found and straightened (`finder.painting_bytes`), each timed."""
    image_dir, _ = catalog.find_image_dir(ip.resolve_root(config.data)[0])
    paths = sorted(image_dir.rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), count, replace=False))]
    found = {}
    for scene in scenes:
        seconds, ious = [], []
        for i, path in enumerate(chosen):
            painting = np.asarray(Image.open(path).convert("RGB"))
            draw = np.random.default_rng([seed, i, sum(map(ord, scene))])
            photo = photos.photograph(painting, draw, photos.scene_config(config, scene))
            encoded = _encoded(photo.image)
            finder.painting_bytes(encoded, config.finder)  # warm: OpenCV's first call
            started = time.perf_counter()
            looked = finder.painting_bytes(encoded, config.finder)
            seconds.append(time.perf_counter() - started)
            ious.append(finder.quad_iou(looked.found.corners, photo.corners))
        found[scene] = dict(
            median_ms=1000 * float(np.median(seconds)),
            p90_ms=1000 * float(np.percentile(seconds, 90)),
            iou_median=float(np.median(ious)),
            photos=count,
        )
    return found
