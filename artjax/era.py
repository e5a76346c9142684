"""When a painting was made: the target of the era head, its losses, its error and how a visitor
reads it.

The target every artist shares: the painting's artist's active period from `artists.csv`
(`data.catalog.active_period`: birth + 20 to death). The dates of single paintings are not in the
data, so a painting counts as placed right when the estimate falls inside its artist's period; the
error of an estimate is its distance in years to that period (0 inside it).

The era head estimates in units of a century from 1700 (`from_years`), so its targets are of the
order of the style logits; its losses are `steps.ERA_LOSSES`. NumPy only: the gallery service
reads periods without JAX.
"""

from __future__ import annotations

import numpy as np

ORIGIN, SCALE = 1700.0, 100.0  # era units: centuries from 1700
WITHIN_YEARS = 25  # "placed within 25 years of the artist's period"


def from_years(years):
    return (np.asarray(years, np.float32) - ORIGIN) / SCALE


def to_years(units):
    return np.asarray(units, np.float64) * SCALE + ORIGIN


def targets(artists, periods: dict) -> np.ndarray:
    """[N, 2] float32: each painting's artist's active period (start, end) in era units; a
    KeyError naming the artist when `periods` (artists.csv's) has none for them."""
    missing = sorted({a for a in artists if a not in periods})
    if missing:
        raise KeyError(f"no active period (artists.csv 'years') for artist(s) {missing}")
    return from_years([periods[a] for a in artists]).reshape(-1, 2)


def errors(estimated_years, periods_of_paintings) -> dict:
    """Painting-level errors of estimates (years [N]) against their artists' periods [N, 2]:
    the mean distance to the period (0 inside it), the mean distance to its middle, and the share
    within WITHIN_YEARS of the period."""
    years = np.asarray(estimated_years, np.float64)
    periods = np.asarray(periods_of_paintings, np.float64).reshape(-1, 2)
    outside = np.maximum(periods[:, 0] - years, 0) + np.maximum(years - periods[:, 1], 0)
    return dict(
        mae_to_period=float(np.mean(outside)),
        mae_to_middle=float(np.mean(np.abs(years - periods.mean(1)))),
        share_within_25=float(np.mean(outside <= WITHIN_YEARS)),
        paintings=int(len(years)),
    )


def report(estimated_years, artists, periods: dict) -> dict:
    """`errors` over every painting, their macro mean over artists, and per artist: the active
    period, the median estimate and the artist's errors. Paintings whose artist has no period (a
    WikiArt painter without one dated painting) are left out and counted."""
    placed = np.array([a in periods for a in artists], bool)
    artists = np.asarray(artists)[placed]
    years = np.asarray(estimated_years, np.float64)[placed]
    per_artist = {}
    for artist in sorted(set(artists.tolist())):
        mine = artists == artist
        found = errors(years[mine], [periods[artist]] * int(mine.sum()))
        per_artist[artist] = dict(
            period=list(periods[artist]), median_estimate=float(np.median(years[mine])), **found
        )
    overall = errors(years, [periods[a] for a in artists])
    macro = {
        k: float(np.mean([v[k] for v in per_artist.values()]))
        for k in ("mae_to_period", "mae_to_middle", "share_within_25")
    }
    return dict(
        overall=overall,
        macro_over_artists=macro,
        per_artist=per_artist,
        paintings_without_period=int((~placed).sum()),
    )


def period_text(year: float, span_years: int) -> str:
    """'about 1870-1900': a span of `span_years` around the estimate, on decades."""
    start = int(round((year - span_years / 2) / 10.0)) * 10
    return f"about {start}-{start + span_years}"
