"""The one mapping that joins the three distributions' style and genre names, and artist slugs.

ArtGAN writes `Art_Nouveau` (its folder: `Art_Nouveau_Modern`), Hugging Face `Art_Nouveau`, Painter
by Numbers `Art Nouveau (Modern)`: all are `Art Nouveau`. A name is matched by its `key` (case,
accents and punctuation folded), then through ALIASES; a style outside WikiArt's 27 (Painter by
Numbers has more, e.g. Surrealism) keeps its own name.
"""

from __future__ import annotations

import re
import unicodedata

# WikiArt's 27 styles (ArtGAN's style_class.txt, Hugging Face's `style` names), artjax spelling.
STYLES = (
    "Abstract Expressionism",
    "Action Painting",
    "Analytical Cubism",
    "Art Nouveau",
    "Baroque",
    "Color Field Painting",
    "Contemporary Realism",
    "Cubism",
    "Early Renaissance",
    "Expressionism",
    "Fauvism",
    "High Renaissance",
    "Impressionism",
    "Mannerism (Late Renaissance)",
    "Minimalism",
    "Naive Art (Primitivism)",
    "New Realism",
    "Northern Renaissance",
    "Pointillism",
    "Pop Art",
    "Post-Impressionism",
    "Realism",
    "Rococo",
    "Romanticism",
    "Symbolism",
    "Synthetic Cubism",
    "Ukiyo-e",
)
# keys that name one of STYLES under another spelling
ALIASES = {"art_nouveau_modern": "Art Nouveau"}
UNKNOWN_GENRES = ("unknown_genre", "")  # Hugging Face's genre 10; an empty cell


def key(name: str) -> str:
    """'Naïve Art (Primitivism)' -> 'naive_art_primitivism': case, accents, punctuation folded."""
    plain = unicodedata.normalize("NFKD", str(name))
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]+", "_", plain.casefold()).strip("_")


_BY_KEY = {key(s): s for s in STYLES} | ALIASES


def style_name(name: str) -> str:
    """A distribution's style name as artjax names it (STYLES, or the name itself, stripped)."""
    return _BY_KEY.get(key(name), str(name).strip())


def genre_name(name) -> str:
    """'sketch_and_study', 'sketch and study' -> 'sketch and study'; unknown -> ''."""
    k = key(name) if isinstance(name, str) else ""
    return "" if k in UNKNOWN_GENRES else k.replace("_", " ")


def _pattern(slug: str) -> str:
    """A slug with each run of non-ASCII characters as one '?' (mojibake turns one letter into
    one or two)."""
    return re.sub(r"[^\x00-\x7f]+", "?", unicodedata.normalize("NFC", slug))


def artist_aliases(slugs) -> dict[str, str]:
    """Joins mojibake slugs to their clean spelling: 'joaquãn-sorolla' -> 'joaquin-sorolla' when
    exactly one slug of the download reads the same with one ASCII letter in each garbled place;
    every other slug maps to itself. The artist-disjoint splits need one name per painter."""
    slugs = sorted(set(slugs))
    clean = [s for s in slugs if s.isascii()]
    found, first_of_pattern = {}, {}
    for slug in slugs:
        if slug.isascii():
            found[slug] = slug
            continue
        parts = [re.escape(p) for p in _pattern(slug).split("?")]
        pattern = re.compile("[a-z]".join(parts))
        matches = [c for c in clean if pattern.fullmatch(c)]
        # no clean spelling: garbled spellings of one slug join the first of them
        first = first_of_pattern.setdefault(_pattern(slug), slug)
        found[slug] = matches[0] if len(matches) == 1 else first
    return found
