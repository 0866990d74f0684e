"""Punctuation normalisation of raw input text, after Moses' normalize-punctuation.perl.

Translation corpora mix typographic variants of the same punctuation („“ « » ” ’ – — …, non-breaking spaces
from French typography). Mapping them to one ASCII form before tokenizer training and at translation time
keeps the vocabulary from spending entries on variants, and makes train and test text look alike.

No detokenizer lives here: tformer's byte-level BPE decodes ids back to the exact text, spaces included (see
tformer.data.tokenizers), so model output needs no detokenization.
"""

from __future__ import annotations

import re

# Non-breaking space and narrow no-break space (the one French typography puts before ; : ! ?).
_NBSP = "\u00a0\u202f"

# (pattern, replacement) in the order of normalize-punctuation.perl; each rule is applied to the whole text.
_RULES: tuple[tuple[str, str], ...] = (
    (r"\r", ""),
    # Spacing around brackets and before : ; %
    (r"\(", " ("),
    (r"\)", ") "),
    (r" +", " "),
    (r"\) ([.!:?;,])", r")\1"),
    (r"\( ", "("),
    (r" \)", ")"),
    (r"(\d) %", r"\1%"),
    (r" :", ":"),
    (r" ;", ";"),
    # ASCII stand-ins for quotes: LaTeX-style `` and '' are double quotes, a lone ` an apostrophe
    (r"``|''", '"'),
    (r"`", "'"),
    # Unicode quotes, dashes, ellipsis
    (r"[„“”]", '"'),
    (r"–", "-"),
    (r"—", " - "),
    (r" +", " "),
    (r"´", "'"),
    (r"([^\W\d_])[‘’]([^\W\d_])", r"\1'\2"),  # an apostrophe between letters: "don’t", "l’été"
    (r"[‘‚’]", '"'),  # any other single quote becomes a double one, as the perl script does
    (r"''", '"'),  # "´´", now "''"
    (r"…", "..."),
    # French guillemets: the (non-breaking) space inside the quotes goes, the one outside stays
    (rf"«[ {_NBSP}]?", '"'),
    (rf"[ {_NBSP}]?»", '"'),
    # Non-breaking spaces: none before % : ? ! ; (French typography), a plain space everywhere else
    (rf"[{_NBSP}]([%:?!;])", r"\1"),
    (rf"[{_NBSP}]", " "),
    (r" +", " "),
)

# Where a quote goes relative to a following comma or period: English puts "quotation," the punctuation
# inside; German, French, Spanish and most others "quotation", outside; Moses leaves Czech alone.
_ENGLISH_QUOTE_RULES = ((r'"([,.]+)', r'\1"'),)
_CONTINENTAL_QUOTE_RULES = (
    (r',"', '",'),
    (r'(\.+)"(\s*[^<])', r'"\1\2'),  # not at the very end: a text-final '."' is left alone, as in Moses
)
_LANGUAGE_CODE = re.compile(r"[a-z]{2}")

_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in _RULES)
_COMPILED_BY_STYLE = {
    style: tuple((re.compile(pattern), replacement) for pattern, replacement in rules)
    for style, rules in (("en", _ENGLISH_QUOTE_RULES), ("cs", ()), ("continental", _CONTINENTAL_QUOTE_RULES))
}


def normalize_punctuation(text: str, lang: str) -> str:
    """`text` with punctuation in one ASCII form, as Moses' normalize-punctuation.perl writes it.

    - quotes „ “ ” « » become '"'; an apostrophe inside a word becomes "'", other single quotes ‘ ‚ ’ become '"'
      (Moses' choice); "``" and "''" become '"', a lone "`" becomes "'";
    - en dash – becomes "-", em dash — becomes " - ", … becomes "...";
    - non-breaking spaces before % : ? ! ; are dropped (French typography), all others become plain spaces;
      plain spaces before : ; and inside brackets are dropped; runs of spaces become one;
    - a comma or period after a closing quote moves inside it for "en", outside for other languages
      except "cs" (as in Moses);
    - leading and trailing whitespace is stripped.

    `lang` is a lowercase two-letter ISO 639-1 code ("en", "de", "fr", ...). Deliberate differences from Moses:
    it rewrites a non-breaking space between digits to "." ("en") or "," ("de", "fr"), which turns the
    French/German "1 000" (one thousand) into the German "1,000" (one); here that space becomes a plain space.
    It turns "''" into ' " ', detaching the quote from its word; here it does not. Its apostrophe rule only
    knows ASCII letters, so "l’été" would become 'l"été'; here any letter counts.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(lang, str) or not _LANGUAGE_CODE.fullmatch(lang):
        raise ValueError(
            f"lang must be a lowercase two-letter language code such as 'en', 'de' or 'fr', got {lang!r}"
        )
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    style = lang if lang in ("en", "cs") else "continental"
    for pattern, replacement in _COMPILED_BY_STYLE[style]:
        text = pattern.sub(replacement, text)
    return text.strip()
