"""Night at a location: when a solar asset cannot produce.

"Night" means the sun is more than :data:`NIGHT_DEPRESSION_DEG` degrees below
the horizon (civil twilight), computed with the ``astral`` library.  Daylight
windows are computed once per location and UTC day and cached.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import astral
import astral.sun

NIGHT_DEPRESSION_DEG = 6.0
_DAY_MS = 86_400_000


@lru_cache(maxsize=65_536)
def _daylight(lat_e6: int, lon_e6: int, day: int) -> tuple[int, int] | None:
    """The daylight window [dawn, dusk] in Unix ms for UTC day number ``day``, or None if none.

    A day on which the sun never goes down that far is all daylight.
    """
    observer = astral.Observer(latitude=lat_e6 / 1e6, longitude=lon_e6 / 1e6)
    date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    try:
        dawn = astral.sun.dawn(observer, date, depression=NIGHT_DEPRESSION_DEG)
        dusk = astral.sun.dusk(observer, date, depression=NIGHT_DEPRESSION_DEG)
    except ValueError:
        # Polar day or polar night: decide by the sun's height at local solar noon.
        noon = astral.sun.noon(observer, date)
        if astral.sun.elevation(observer, noon) > -NIGHT_DEPRESSION_DEG:
            return day * _DAY_MS, (day + 1) * _DAY_MS
        return None
    start, end = int(dawn.timestamp() * 1000), int(dusk.timestamp() * 1000)
    if end <= start:
        # astral's dusk fell on the next UTC day's date: the window wraps midnight.
        end += _DAY_MS
    return start, end


def is_night_throughout(lat_e6: int, lon_e6: int, t1_ms: int, t2_ms: int) -> bool:
    """True if the whole interval [t1_ms, t2_ms] lies in night at the location."""
    if t2_ms < t1_ms:
        t1_ms, t2_ms = t2_ms, t1_ms
    first, last = t1_ms // _DAY_MS - 1, t2_ms // _DAY_MS + 1
    for day in range(first, last + 1):
        window = _daylight(lat_e6, lon_e6, day)
        if window is not None and window[0] <= t2_ms and t1_ms <= window[1]:
            return False
    return True
