"""Sizes and durations as people write them, the same rules as the CLI.

Sizes: an int (bytes) or a string "64M", "1.5G", "512k", "64MiB" (binary
multiples, case-insensitive). Durations: seconds as an int or float, a
datetime.timedelta, or a string "500ms", "2s", "1h30m" (units ns, us, ms, s,
m, h on every component; a bare "0" is zero).
"""

from __future__ import annotations

import datetime
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Union

from ._errors import invalid_argument

Size = Union[int, str]
Duration = Union[int, float, str, datetime.timedelta]

_INT64_MAX = (1 << 63) - 1
_SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:([kmgtp])(i?)(b?)|(b?))$", re.IGNORECASE)
_SIZE_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_size(value: Size, what: str = "size") -> int:
    """Bytes from an int or a string such as "64M"; InvalidArgumentError otherwise."""
    if isinstance(value, bool):
        raise invalid_argument(f"{what}: expected bytes or a size like '64M', got {value!r}")
    if isinstance(value, int):
        if value < 0 or value > _INT64_MAX:
            raise invalid_argument(f"{what}: {value} is out of range")
        return value
    if not isinstance(value, str):
        raise invalid_argument(f"{what}: expected bytes or a size like '64M', got {value!r}")
    m = _SIZE_RE.match(value)
    if not m:
        raise invalid_argument(f"{what}: invalid size {value!r} (expected e.g. 512k, 64M, 1.5G)")
    number, unit = m.group(1), (m.group(2) or "").lower()
    try:
        amount = Decimal(number) * (1 << _SIZE_SHIFT.get(unit, 0))
    except InvalidOperation:
        raise invalid_argument(f"{what}: invalid size {value!r}") from None
    result = int(amount)  # rounds down to whole bytes
    if result > _INT64_MAX:
        raise invalid_argument(f"{what}: size {value!r} is too large")
    return result


def parse_duration_ns(value: Duration, what: str = "duration") -> int:
    """Nanoseconds from seconds, a timedelta or a string such as "1.5s"."""
    if isinstance(value, bool):
        raise invalid_argument(f"{what}: expected seconds or a duration like '2s', got {value!r}")
    if isinstance(value, datetime.timedelta):
        ns = (value.days * 86400 + value.seconds) * 10**9 + value.microseconds * 1000
    elif isinstance(value, int):
        ns = value * 10**9
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid_argument(f"{what}: {value} is not a finite duration")
        ns = round(value * 1e9)
    elif isinstance(value, str):
        ns = _parse_duration_text(value, what)
    else:
        raise invalid_argument(f"{what}: expected seconds or a duration like '2s', got {value!r}")
    if ns < 0:
        raise invalid_argument(f"{what}: {value!r} is negative")
    return ns


def _parse_duration_text(text: str, what: str) -> int:
    if text == "0":
        return 0
    pos, total = 0, Decimal(0)
    while pos < len(text):
        m = _DURATION_PART_RE.match(text, pos)
        if not m:
            raise invalid_argument(
                f"{what}: invalid duration {text!r} (expected e.g. 500ms, 2s, 5m, 1h30m)")
        total += Decimal(m.group(1)) * _NANOS[m.group(2)]
        pos = m.end()
    if not text:
        raise invalid_argument(f"{what}: empty duration")
    return int(total)


def format_size(size: int) -> str:
    """64M for 67108864, 1.5G, 100B: the shortest binary unit, as the CLI prints."""
    for suffix, shift in (("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{size}B"
