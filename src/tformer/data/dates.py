"""Generated demo data: dates written by people, in English, German and French -> ISO "YYYY-MM-DD".

Nothing is read from disk; pairs come from a seeded generator. Rules that keep every input unambiguous:

- Dates run from 1950-01-01 to 2049-12-31, so a two-digit year has one reading:
  "'50".."'99" are 1950-1999 and "'00".."'49" are 2000-2049.
- Each numeric style has one fixed field order: "23/11/2026" and "23.11.2026" are day-month-year,
  "2026/11/23" is year-month-day. There is no month-first numeric style: with both orders "05/06/2026"
  would have two targets.
- A month name means the same month in every language it appears in ("Mai"/"mai", "Nov"/"nov."), and
  weekday names are always the true weekday of the date.
- Letter case varies (as written, lower, upper); the date never depends on it.

Splits are by date, not by example: a hash of the ISO date puts 80% of dates in "train", 10% in "valid"
and 10% in "test", so no test date is ever seen in training, in any style.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache

FIRST_DATE = date(1950, 1, 1)
LAST_DATE = date(2049, 12, 31)

_SPLIT_PERCENT_RANGES = {"train": range(0, 80), "valid": range(80, 90), "test": range(90, 100)}

# fmt: off
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")
EN_MONTHS_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DE_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
             "November", "Dezember")
DE_MONTHS_ABBR = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.",
                  "Dez.")
DE_WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
FR_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre")
FR_MONTHS_ABBR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
                  "déc.")
FR_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")

# German ordinals 1..19 are irregular stems + "er"; 20..31 are <unit>und<tens> + "ster".
_DE_ORDINAL_STEMS_1_TO_19 = ("erst", "zweit", "dritt", "viert", "fünft", "sechst", "siebt", "acht", "neunt",
                             "zehnt", "elft", "zwölft", "dreizehnt", "vierzehnt", "fünfzehnt", "sechzehnt",
                             "siebzehnt", "achtzehnt", "neunzehnt")
# fmt: on
_DE_UNITS = ("", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
_DE_TENS = {2: "zwanzig", 3: "dreißig"}


def german_day_ordinal(day: int) -> str:
    """Nominative masculine ordinal ("der ... November"): 1 -> "erster", 23 -> "dreiundzwanzigster"."""
    if not 1 <= day <= 31:
        raise ValueError(f"day must be in 1..31, got {day}")
    if day < 20:
        return _DE_ORDINAL_STEMS_1_TO_19[day - 1] + "er"
    tens, unit = divmod(day, 10)
    stem = f"{_DE_UNITS[unit]}und{_DE_TENS[tens]}" if unit else _DE_TENS[tens]
    return stem + "ster"


def english_day_ordinal(day: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Each style is a template over the fields of _date_fields; the examples are 2026-11-23, a Monday.
_STYLE_TEMPLATES: dict[str, str] = {
    "en_day_month_year": "{day} {en_month} {year}",  # 23 November 2026
    "en_ordinal_of": "{en_ordinal} of {en_month} {year}",  # 23rd of November 2026
    "en_month_day_year": "{en_month} {day}, {year}",  # November 23, 2026
    "en_abbr_short_year": "{en_month_abbr} {day}, '{yy}",  # Nov 23, '26
    "en_abbr_day_month_year": "{day} {en_month_abbr} {year}",  # 23 Nov 2026
    "en_weekday_day_month_year": "{en_weekday}, {day} {en_month} {year}",  # Monday, 23 November 2026
    "en_weekday_month_day_year": "{en_weekday}, {en_month} {day}, {year}",  # Monday, November 23, 2026
    "de_day_month_year": "{day}. {de_month} {year}",  # 23. November 2026
    "de_abbr_day_month_year": "{day}. {de_month_abbr} {year}",  # 23. Nov. 2026
    "de_weekday_day_month_year": "{de_weekday}, {day}. {de_month} {year}",  # Montag, 23. November 2026
    "de_ordinal_words": "{de_ordinal} {de_month} {year}",  # dreiundzwanzigster November 2026
    "fr_le_day_month_year": "le {fr_day} {fr_month} {year}",  # le 23 novembre 2026; le 1er mai 2026
    "fr_weekday_day_month_year": "{fr_weekday} {fr_day} {fr_month} {year}",  # lundi 23 novembre 2026
    "fr_abbr_day_month_year": "{fr_day} {fr_month_abbr} {year}",  # 23 nov. 2026
    "dmy_slash": "{dd}/{mm}/{year}",  # 23/11/2026
    "dmy_dot": "{dd}.{mm}.{year}",  # 23.11.2026
    "ymd_slash": "{year}/{mm}/{dd}",  # 2026/11/23
}


def _date_fields(d: date) -> dict[str, str | int]:
    month, weekday = d.month - 1, d.weekday()
    return {
        "day": d.day,
        "dd": f"{d.day:02d}",
        "mm": f"{d.month:02d}",
        "year": d.year,
        "yy": f"{d.year % 100:02d}",
        "en_month": EN_MONTHS[month],
        "en_month_abbr": EN_MONTHS_ABBR[month],
        "en_weekday": EN_WEEKDAYS[weekday],
        "en_ordinal": english_day_ordinal(d.day),
        "de_month": DE_MONTHS[month],
        "de_month_abbr": DE_MONTHS_ABBR[month],
        "de_weekday": DE_WEEKDAYS[weekday],
        "de_ordinal": german_day_ordinal(d.day),
        "fr_month": FR_MONTHS[month],
        "fr_month_abbr": FR_MONTHS_ABBR[month],
        "fr_weekday": FR_WEEKDAYS[weekday],
        "fr_day": "1er" if d.day == 1 else d.day,  # French writes the first of the month as an ordinal
    }


DATE_STYLES: tuple[str, ...] = tuple(_STYLE_TEMPLATES)
DATE_SPLITS: tuple[str, ...] = tuple(_SPLIT_PERCENT_RANGES)

_CASES: dict[str, Callable[[str], str]] = {"as_written": str, "lower": str.lower, "upper": str.upper}
_CASE_WEIGHTS = (6, 2, 2)


def generate_date_pairs(
    n: int, *, seed: int, split: str = "train", styles: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """`n` (human-written date, "YYYY-MM-DD") pairs: a date drawn uniformly from `split`'s dates, a style
    drawn uniformly from `styles` (default: all of DATE_STYLES), then a letter case. Same arguments,
    same pairs.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if split not in _SPLIT_PERCENT_RANGES:
        raise ValueError(f"split must be one of {list(DATE_SPLITS)}, got {split!r}")
    chosen = _checked_styles(styles)
    ordinals = _date_ordinals_in_split(split)
    # A str seed goes through SHA-512 in random.Random, so streams are stable across runs and hash seeds.
    rng = random.Random(f"tformer.dates/{split}/{seed}")
    pairs = []
    for _ in range(n):
        day = date.fromordinal(rng.choice(ordinals))
        style = rng.choice(chosen)
        case = rng.choices(list(_CASES), weights=_CASE_WEIGHTS)[0]
        text = _STYLE_TEMPLATES[style].format(**_date_fields(day))
        pairs.append((_CASES[case](text), day.isoformat()))
    return pairs


def _checked_styles(styles: Sequence[str] | None) -> tuple[str, ...]:
    if styles is None:
        return DATE_STYLES
    if isinstance(styles, str):
        raise TypeError(
            f"styles must be a sequence of style names, got the single str {styles!r}; wrap it in a list"
        )
    unknown = [s for s in styles if s not in _STYLE_TEMPLATES]
    if unknown or not styles:
        got = f"unknown {unknown}" if unknown else "an empty list"
        raise ValueError(f"styles must be a non-empty subset of {list(DATE_STYLES)}, got {got}")
    return tuple(styles)


def _split_of(day: date) -> str:
    digest = hashlib.sha256(day.isoformat().encode("ascii")).digest()
    percent = int.from_bytes(digest[:8], "big") % 100
    return next(name for name, window in _SPLIT_PERCENT_RANGES.items() if percent in window)


@lru_cache(maxsize=len(_SPLIT_PERCENT_RANGES))
def _date_ordinals_in_split(split: str) -> tuple[int, ...]:
    days = range(FIRST_DATE.toordinal(), LAST_DATE.toordinal() + 1)
    return tuple(o for o in days if _split_of(date.fromordinal(o)) == split)
