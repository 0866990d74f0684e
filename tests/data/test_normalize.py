"""Punctuation normalisation: hand examples in English, German and French, each worked out from the rules of
Moses' normalize-punctuation.perl (and the documented deliberate differences)."""

from __future__ import annotations

import pytest

from tformer.data.normalize import normalize_punctuation

NBSP, NNBSP = "\u00a0", "\u202f"

EXAMPLES = [
    # English: curly quotes become '"', and a comma after the closing quote moves inside it.
    ("en", "He said “hello”, then left…", 'He said "hello," then left...'),
    ("en", "She said “yes”.", 'She said "yes."'),
    # Apostrophes inside words stay apostrophes; en dash -> "-", em dash -> " - " (then single spaces).
    ("en", "Don’t stop – it’s fine—really.", "Don't stop - it's fine - really."),
    # Other single quotes become double ones (Moses' choice); LaTeX-style quotes too.
    ("en", "it‘s ‘single’ and ``double''", 'it\'s "single" and "double"'),
    # Spaces inside brackets and before : ; % go; a space between ")" and punctuation goes.
    ("en", "The price ( in dollars ) is 5 % : high ; low", "The price (in dollars) is 5%: high; low"),
    ("en", "(Hello) .", "(Hello)."),
    ("en", "many   spaces\r\n", "many spaces"),
    # German: „…“ quotes; the comma moves outside the closing quote, the opposite of English.
    ("de", "Er sagte: „Hallo“, und ging.", 'Er sagte: "Hallo", und ging.'),
    ("de", "Er sagte „Hallo,“ und ging.", 'Er sagte "Hallo", und ging.'),
    # A period before a closing quote moves outside it, except at the very end of the text.
    ("de", "Sie sagte „Ja.“ Dann ging sie.", 'Sie sagte "Ja". Dann ging sie.'),
    ("de", "Sie sagte „Ja.“", 'Sie sagte "Ja."'),
    ("de", "‚einfach‘ gesagt", '"einfach" gesagt'),
    # A non-breaking space between digits becomes a plain space (Moses would write "1,000", one, in German).
    ("de", f"1{NBSP}000 Euro", "1 000 Euro"),
    # French: guillemets with non-breaking spaces inside; no space before : ! ? ; after normalisation.
    ("fr", f"Il a dit{NBSP}: «{NBSP}bonjour{NBSP}»{NBSP}!", 'Il a dit: "bonjour"!'),
    ("fr", f"Vraiment{NNBSP}? Oui{NNBSP};", "Vraiment? Oui;"),
    ("fr", "Il dit : « oui » et part.", 'Il dit: "oui" et part.'),
    ("fr", "C’est l’été.", "C'est l'été."),  # Moses' ASCII-only letter class would give 'l"été'
    ("fr", f"50{NBSP}% des gens", "50% des gens"),
]


@pytest.mark.parametrize(("lang", "text", "expected"), EXAMPLES)
def test_hand_examples(lang, text, expected):
    assert normalize_punctuation(text, lang) == expected


@pytest.mark.parametrize(("lang", "text", "expected"), EXAMPLES)
def test_normalised_text_is_left_alone(lang, text, expected):
    assert normalize_punctuation(expected, lang) == expected


def test_czech_quotes_stay_where_they_are():
    # Moses moves commas neither in nor out for Czech; every other non-English language gets the German rule.
    assert normalize_punctuation("řekl „ahoj,“ a šel", "cs") == 'řekl "ahoj," a šel'
    assert normalize_punctuation("dijo „hola,“ y se fue", "es") == 'dijo "hola", y se fue'


def test_plain_ascii_sentence_is_unchanged():
    text = "A man in a blue shirt is riding a bike down the hill."
    for lang in ("en", "de", "fr"):
        assert normalize_punctuation(text, lang) == text


@pytest.mark.parametrize("lang", ["EN", "english", "", "e", None])
def test_bad_language_raises(lang):
    with pytest.raises(ValueError, match="two-letter language code"):
        normalize_punctuation("text", lang)


def test_non_string_text_raises():
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        normalize_punctuation(b"text", "en")
