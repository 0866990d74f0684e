"""The date data set, checked against parsers written here from hand-made tables (not the generator's)."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from tformer.data.dates import DATE_STYLES, generate_date_pairs, german_day_ordinal

MONTHS = {
    "en": "january february march april may june july august september october november december",
    "en_abbr": "jan feb mar apr may jun jul aug sep oct nov dec",
    "de": "januar februar märz april mai juni juli august september oktober november dezember",
    "de_abbr": "jan. feb. märz apr. mai juni juli aug. sept. okt. nov. dez.",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "fr_abbr": "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc.",
}
MONTH_NUMBER = {lang: {name: i + 1 for i, name in enumerate(names.split())} for lang, names in MONTHS.items()}
WEEKDAYS = {  # Monday first
    "en": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "de": ("montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
}
GERMAN_ORDINALS = [
    "erster", "zweiter", "dritter", "vierter", "fünfter", "sechster", "siebter", "achter", "neunter",
    "zehnter", "elfter", "zwölfter", "dreizehnter", "vierzehnter", "fünfzehnter", "sechzehnter",
    "siebzehnter", "achtzehnter", "neunzehnter", "zwanzigster", "einundzwanzigster", "zweiundzwanzigster",
    "dreiundzwanzigster", "vierundzwanzigster", "fünfundzwanzigster", "sechsundzwanzigster",
    "siebenundzwanzigster", "achtundzwanzigster", "neunundzwanzigster", "dreißigster", "einunddreißigster",
]  # fmt: skip
ENGLISH_SUFFIX_EXCEPTIONS = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}

D, Y, W, M = r"(?P<day>\d{1,2})", r"(?P<year>\d{4})", r"(?P<weekday>\S+)", r"(?P<month>\S+)"
FR_D = r"(?P<day>1er|\d{1,2})"
# style -> (month table, regex over the casefolded text)
PATTERNS = {
    "en_day_month_year": ("en", rf"{D} {M} {Y}"),
    "en_ordinal_of": ("en", rf"{D}(?P<suffix>st|nd|rd|th) of {M} {Y}"),
    "en_month_day_year": ("en", rf"{M} {D}, {Y}"),
    "en_abbr_short_year": ("en_abbr", rf"{M} {D}, '(?P<yy>\d\d)"),
    "en_abbr_day_month_year": ("en_abbr", rf"{D} {M} {Y}"),
    "en_weekday_day_month_year": ("en", rf"{W}, {D} {M} {Y}"),
    "en_weekday_month_day_year": ("en", rf"{W}, {M} {D}, {Y}"),
    "de_day_month_year": ("de", rf"{D}\. {M} {Y}"),
    "de_abbr_day_month_year": ("de_abbr", rf"{D}\. {M} {Y}"),
    "de_weekday_day_month_year": ("de", rf"{W}, {D}\. {M} {Y}"),
    "de_ordinal_words": ("de", rf"(?P<day_word>\S+) {M} {Y}"),
    "fr_le_day_month_year": ("fr", rf"le {FR_D} {M} {Y}"),
    "fr_weekday_day_month_year": ("fr", rf"{W} {FR_D} {M} {Y}"),
    "fr_abbr_day_month_year": ("fr_abbr", rf"{FR_D} {M} {Y}"),
}
STRPTIME_FORMATS = {"dmy_slash": "%d/%m/%Y", "dmy_dot": "%d.%m.%Y", "ymd_slash": "%Y/%m/%d"}


def zeller_weekday(day: date) -> int:
    """Weekday by Zeller's congruence, Monday = 0 (independent of datetime.weekday)."""
    q, m, y = day.day, day.month, day.year
    if m < 3:
        m, y = m + 12, y - 1
    h = (q + 13 * (m + 1) // 5 + y % 100 + (y % 100) // 4 + (y // 100) // 4 + 5 * (y // 100)) % 7
    return (h + 5) % 7  # Zeller: 0 = Saturday


def parse(style: str, text: str) -> date:
    if style in STRPTIME_FORMATS:
        return datetime.strptime(text, STRPTIME_FORMATS[style]).date()
    table, pattern = PATTERNS[style]
    match = re.fullmatch(pattern, text.casefold())
    assert match, (style, text)
    g = match.groupdict()
    if "yy" in g:  # the documented rule: '50..'99 -> 1950s..1990s, '00..'49 -> 2000s..2040s
        year = 1900 + int(g["yy"]) if int(g["yy"]) >= 50 else 2000 + int(g["yy"])
    else:
        year = int(g["year"])
    if "day_word" in g:
        day = [w.casefold() for w in GERMAN_ORDINALS].index(g["day_word"]) + 1
    elif g["day"] == "1er":
        day = 1
    else:
        day = int(g["day"])
        assert not (table.startswith("fr") and day == 1), f"French writes the first as 1er: {text!r}"
    parsed = date(year, MONTH_NUMBER[table][g["month"]], day)
    if "suffix" in g:
        assert g["suffix"] == ENGLISH_SUFFIX_EXCEPTIONS.get(day, "th"), text
    if "weekday" in g:
        language = table.split("_")[0]
        assert g["weekday"] == WEEKDAYS[language][zeller_weekday(parsed)], f"wrong weekday in {text!r}"
    return parsed


def test_every_style_has_an_independent_parser() -> None:
    assert set(PATTERNS) | set(STRPTIME_FORMATS) == set(DATE_STYLES)


def test_zeller_reference_on_known_dates() -> None:
    assert zeller_weekday(date(2026, 11, 23)) == 0  # a Monday
    assert zeller_weekday(date(2000, 2, 29)) == 1  # a Tuesday
    assert zeller_weekday(date(1969, 7, 20)) == 6  # a Sunday


@pytest.mark.parametrize("style", DATE_STYLES)
def test_each_style_parses_back_to_its_target(style: str) -> None:
    pairs = generate_date_pairs(300, seed=11, styles=[style])
    assert len(pairs) == 300
    for text, target in pairs:
        assert parse(style, text) == date.fromisoformat(target), (style, text, target)


def test_targets_are_valid_iso_dates_in_range() -> None:
    for _, target in generate_date_pairs(2000, seed=0):
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
        assert date(1950, 1, 1) <= date.fromisoformat(target) <= date(2049, 12, 31)


def test_german_day_ordinals_are_spelled_correctly() -> None:
    assert [german_day_ordinal(d) for d in range(1, 32)] == GERMAN_ORDINALS
    with pytest.raises(ValueError, match="got 32"):
        german_day_ordinal(32)


def test_two_digit_years_cover_both_centuries() -> None:
    years = {
        date.fromisoformat(t).year
        for _, t in generate_date_pairs(3000, seed=1, styles=["en_abbr_short_year"])
    }
    assert min(years) < 1960 and max(years) > 2040  # '87-style and '26-style years both appear and parse


def test_surface_form_determines_the_date_across_all_styles() -> None:
    seen: dict[str, str] = {}
    for text, target in generate_date_pairs(20000, seed=2):
        assert seen.setdefault(text.casefold(), target) == target, text


def test_letter_case_varies() -> None:
    texts = [
        t for t, _ in generate_date_pairs(300, seed=3, styles=["fr_le_day_month_year", "en_month_day_year"])
    ]
    assert any(t.isupper() for t in texts)
    assert any(t.islower() and "le " in t for t in texts)
    assert any(t[0].isupper() and not t.isupper() for t in texts)  # as written: "November 23, 2026"


def test_splits_use_disjoint_dates() -> None:
    targets = {
        split: {t for _, t in generate_date_pairs(4000, seed=4, split=split)}
        for split in ("train", "valid", "test")
    }
    assert not targets["train"] & targets["test"]
    assert not targets["train"] & targets["valid"]
    assert not targets["valid"] & targets["test"]
    # 4000 draws from a pool of N dates give about N * (1 - exp(-4000 / N)) distinct ones: about 2430 for the
    # 10% pool (N = 3652); a 5% pool would give about 1620, a 20% pool about 3100.
    assert 2200 < len(targets["test"]) < 2700


def test_deterministic_for_a_seed_and_split() -> None:
    first = generate_date_pairs(200, seed=5)
    assert generate_date_pairs(200, seed=5) == first
    assert generate_date_pairs(200, seed=6) != first
    assert generate_date_pairs(200, seed=5, styles=DATE_STYLES) == first
    assert generate_date_pairs(50, seed=5) == first[:50]


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="got unknown \\['us_slash'\\]"):
        generate_date_pairs(1, seed=0, styles=["dmy_dot", "us_slash"])
    with pytest.raises(ValueError, match="got an empty list"):
        generate_date_pairs(1, seed=0, styles=[])
    with pytest.raises(TypeError, match="single str 'dmy_dot'"):
        generate_date_pairs(1, seed=0, styles="dmy_dot")
    with pytest.raises(ValueError, match="split must be one of"):
        generate_date_pairs(1, seed=0, split="dev")
    with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
        generate_date_pairs(-1, seed=0)
    assert generate_date_pairs(0, seed=0) == []
