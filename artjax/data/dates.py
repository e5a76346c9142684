"""A painting's date as written in the catalogues (Painter by Numbers' `date`) -> the years it may
have been made in, (start, end) inclusive, or None when the text says nothing we can trust.

The rule, form by form (spaces around dashes and a trailing ".0" from a float column are ignored):
  "1872"        one year                         -> (1872, 1872)
  "1872-1873"   a range (hyphen or dash)         -> (1872, 1873); "1872-73" too
  "1910s"       a decade                         -> (1910, 1919)
  "c.1650"      circa ("c.", "c", "ca.", "circa") widens what follows by CIRCA_YEARS on each
                side                             -> (1645, 1655); "c.1665-1670" -> (1660, 1675)
  "", None, NaN, and anything else ("May 1901", "unknown", a reversed range, a year outside
  EARLIEST..LATEST)                              -> None
None is excluded from the era loss: an unparseable date is never guessed.
"""

from __future__ import annotations

import math
import re

CIRCA_YEARS = 5  # "c.1650": the painter's catalogue is sure of the decade, not the year
EARLIEST, LATEST = 1000, 2100  # a year outside is a typo, not a date

_CIRCA = r"(?P<circa>(?:c|ca|circa)\.?\s*)?"
_YEAR = r"(?P<start>\d{4})"
_PATTERNS = (
    re.compile(rf"{_CIRCA}{_YEAR}"),
    re.compile(rf"{_CIRCA}{_YEAR}s"),
    re.compile(rf"{_CIRCA}{_YEAR}\s*[-\u2013\u2014]\s*(?P<end>\d{{2}}|\d{{4}})"),
)


def parse_date(text) -> tuple[int, int] | None:
    """The years (start, end) that `text` allows (the module's rule), or None."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    text = re.sub(r"\.0$", "", str(text).strip().lower())
    for pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            break
    else:
        return None
    start = int(match["start"])
    if text.endswith("s"):
        if start % 10:
            return None  # "1915s" is not a decade
        end = start + 9
    elif match.groupdict().get("end"):
        end = match["end"]
        end = int(end) if len(end) == 4 else start // 100 * 100 + int(end)
    else:
        end = start
    if end < start or start < EARLIEST or end > LATEST:
        return None
    if match["circa"]:
        start, end = start - CIRCA_YEARS, end + CIRCA_YEARS
    return start, end
