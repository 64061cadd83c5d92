r"""Numbers as a person writes them: how the answer inside a ``<SOLUTION>`` block is read.

The answer format, the block rules and the judge are in :mod:`gsm8k_lab.task`; this module reads
the number (and the gold after GSM8K's ``####``), and holds lm-eval's GSM8K rules as a cross-check.

Model output is only ever parsed, never executed. Rules, decided once:
- Inside the block the **last number** is the answer: ``$1,000.00``, ``18 dollars``,
  ``x = 18.``, ``+18``, ``3/4``, ``1 1/2`` (1.5), ``1.5e3``, ``-7``, ``USD18`` and
  ``x10`` all read as numbers. Commas group thousands in groups of exactly three
  digits (``1,000`` = 1000); a dot is always a decimal point (``1.000`` = 1). A run
  of digits, dots and commas is read whole: when it is malformed (``3,2``,
  ``1,0005``, ``2,880,0000``, ``18.0.1``) the completion has no readable answer,
  never a part of the run or an earlier number.
- A single space, no-break space (U+00A0), figure space (U+2007), thin space
  (U+2009), narrow no-break space (U+202F) or LaTeX's ``\,`` / ``{,}`` groups
  thousands like a comma does, when groups of exactly three digits follow a head
  of one to three digits: ``10 000`` = 10000, ``20 000 000`` = 20000000, and
  ``5 300`` = 5300 in a sentence too (the number is read before the last-number
  rule picks one). A space before anything but exactly three digits is an
  ordinary separator: ``3 14`` is two numbers, the last 14 (never 314). Once a
  run has a three-digit space group it is read whole, so a grouping that breaks
  the rule (``1234 567``, ``20 000 0000``, ``10 000,5``, ``1,000 000``) is no
  answer; so is a space and a three-digit fraction (``1 000/4``, ``5 300/2``:
  grouped or mixed?). A run of two or more digits that starts with 0 (``000``,
  ``05``) is no answer: it is the tail of a grouping not recognised (``10'000``),
  never the number 0 or 5.
- A sign counts only when attached to its number and nothing word-like is glued
  before it: ``-7`` is negative, but in ``20 - 5`` and ``20-5`` the last number is
  ``5``, not ``-5``. The minus sign (U+2212) and the en dash (U+2013) are read
  like ``-`` (``−7`` and ``–7`` are -7; ``3–5`` is a range, the last number 5).
- A colon inside a run (``7:30``, ``3:1``) makes a time or a ratio: no answer.
- A magnitude suffix glued to the number (``2k``, ``5K``, ``3m``, ``1.5M``,
  ``2bn``, ``4B``, ``1T``: one of k K m M b B T bn mn tn, with no letter after it)
  makes it no answer rather than a guess. ``k`` nearly always means a thousand,
  but GSM8K's own solutions glue ``m`` to metres (``16m``) and single letters to
  variables (``2b``, ``3T``); one rule for every suffix is never wrong, and a
  bare number is what the prompt asks for. Unit words and longer unit symbols
  still read (``18 dollars``, ``5km``, ``10min``).
- LaTeX fractions ``\frac{a}{b}``, ``\dfrac``, ``\tfrac`` and ``\cfrac`` (and the
  short ``\frac12``) read as a/b when both arguments are plain numbers;
  ``1\frac{1}{2}`` is the mixed number 1.5, ``2\frac{3}{2}`` (mixed, or a product?)
  no answer. Any other ``\frac`` (letters, a sign or a nested ``\frac`` inside it)
  is no answer, and one whose arguments cannot be found (unclosed, or braces
  nested more than two deep) makes the rest of the block unreadable: its
  digits are never read one by one.
- An integer gold (every GSM8K test answer) is compared **exactly**: ``18.00``
  equals ``18`` but ``2880002`` does not equal ``2,880,000``. A decimal gold
  allows a relative difference of 1e-9, far below the gap between any two
  distinct GSM8K golds.
"""

from __future__ import annotations

import math
import re

# --------------------------------------------------------------------------
# Named patterns (data, so they are visible and table-tested)
# --------------------------------------------------------------------------
# Pieces of the number pattern, named so the rules in the docstring can be found in it.
# digit-group separators besides the comma: space, no-break space, figure space, thin space, narrow
# no-break space, and LaTeX's thin space "\," and braced comma "{,}"
_GROUP_SPACE = r"(?:[ \u00a0\u2007\u2009\u202f]|\\,|\{,\})"
# a run of digits read whole: digits joined by single dots, commas or colons; a space-like separator
# joins the run only before exactly three digits, and after such a group every further separator and
# its digits join too (so 20 000 0000 is one malformed run, never 20000 and then 0)
_RUN = rf"\d+(?:[.,:]\d+)*(?:{_GROUP_SPACE}\d{{3}}(?!\d)(?:(?:[.,:]|{_GROUP_SPACE})\d+)*)?"
# a LaTeX fraction command, and one argument: braces (nested at most two deep) or a single character
_FRAC = r"\\[cdt]?frac(?![A-Za-z])"
_FRAC_ARG = r"\{(?:[^{}]|\{[^{}]*\})*\}|[^\s{}\\]"
_MINUS = ("-", "−", "–")  # hyphen-minus, minus sign U+2212, en dash U+2013
PATTERNS: dict[str, re.Pattern] = {
    # a number-like token: an optional sign (only when nothing word-like is glued before it) or
    # currency sign, then either a LaTeX fraction (its two arguments, or, when they cannot be found,
    # the rest of the text as "frac_bad") or a mixed number (1 1/2), or a run of digits (_RUN), with
    # an optional exponent and an optional "/ denominator". The run is taken whole and checked
    # afterwards (see NUMBER_BODY), so 2,880,0000 or 18.0.1 is one malformed token, never 2,880,000 or
    # 18.0 with the rest dropped. Letters may precede the digits (USD18, x10); a magnitude suffix
    # glued after them (2k, 3bn) is captured so that the token reads as no answer.
    "number": re.compile(
        r"(?:(?<![\w.,])[-+−–]\$?|(?<![\d.,])\$\s?|(?<![\d.,]))"
        rf"(?:(?P<whole>\d+)(?:\s+(?=\d+\s?/\s?\d)|\s*(?={_FRAC})))?"
        rf"(?:{_FRAC}\s*(?:(?P<frac_num>{_FRAC_ARG})\s*(?P<frac_den>{_FRAC_ARG})|(?P<frac_bad>(?s:.*)))"
        rf"|(?P<body>{_RUN}|\.\d+)(?P<exponent>[eE][-+]?\d+)?(?:\s?/\s?(?P<denominator>{_RUN}))?)"
        r"(?P<magnitude>(?:[bmt]n|[kKmMbBT])(?![A-Za-z]))?"
    ),
    # a well-formed run of digits: no leading zero before another digit, thousands groups of exactly
    # three digits all joined by commas or all by space-like separators, at most one decimal point
    "number_body": re.compile(
        rf"(?!0\d)(?:\d{{1,3}}(?:,\d{{3}})+|\d{{1,3}}(?:{_GROUP_SPACE}\d{{3}})+|\d+)(?:\.\d+)?|\.\d+"
    ),
    # what is dropped from a well-formed run before it is read as a float
    "group_separator": re.compile(rf"{_GROUP_SPACE}|,"),
    # GSM8K gold marker and lm-evaluation-harness "strict-match"
    "gold_marker": re.compile(r"####\s*(.+?)\s*$", re.MULTILINE),
    "harness_strict": re.compile(r"#### (\-?[0-9\.\,]+)"),
    # lm-evaluation-harness "flexible-extract": the last number-like token
    "harness_flexible": re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)"),
}
# strings the harness strips before its exact-match comparison
_HARNESS_IGNORE = [re.compile(r","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$")]

#: Relative tolerance for decimal golds only; integer golds compare exactly.
DECIMAL_REL_TOL = 1e-9


def parse_number(text: str | None) -> float | None:
    """Read the last number in ``text``; None when there is none, or when the last number-like
    token is malformed (``3,2``, ``1,0005``, ``18.0.1``, ``5/0``): an earlier number is not the answer."""
    if not text:
        return None
    matches = list(PATTERNS["number"].finditer(text))
    return _to_float(matches[-1]) if matches else None


def parse_gold(answer: str) -> float:
    """The number after ``####`` in a GSM8K solution (commas allowed)."""
    m = PATTERNS["gold_marker"].search(answer)
    value = parse_number(m.group(1)) if m else None
    if value is None:
        raise ValueError(f"no '#### <number>' marker in answer: {answer[-80:]!r}")
    return value


def numbers_match(value: float | None, gold: float | None) -> bool:
    """The extracted value equals the gold: exactly for an integer gold, within 1e-9 relative otherwise."""
    if value is None or gold is None:
        return False
    if float(gold).is_integer():
        return float(value) == float(gold)
    return math.isclose(value, gold, rel_tol=DECIMAL_REL_TOL, abs_tol=0.0)


# --------------------------------------------------------------------------
# lm-evaluation-harness GSM8K extraction rules, applied to this project's completions.
# They are NOT comparable with published lm-eval GSM8K numbers: those come from a few-shot
# prompt that asks for "#### N", while these completions answer a chat prompt in the
# <SOLUTION> tags (so strict-match is near zero by construction). They are a cross-check of
# the scorer: how much of the accuracy depends on reading the SOLUTION block (flexible: the
# last number anywhere in the completion) and whether a model falls back to GSM8K's own
# "#### N" style (strict).
# --------------------------------------------------------------------------
def harness_strict(text: str, gold_text: str) -> bool:
    """``strict-match``: the first ``#### N`` in the text equals the gold string."""
    m = PATTERNS["harness_strict"].search(text)
    return m is not None and _harness_norm(m.group(1)) == _harness_norm(gold_text)


def harness_flexible(text: str, gold_text: str) -> bool:
    """``flexible-extract``: the last number-like token equals the gold string."""
    matches = PATTERNS["harness_flexible"].findall(text)
    if not matches:
        return False
    last = next(g for g in matches[-1] if g)
    return _harness_norm(last) == _harness_norm(gold_text)


def gold_text(answer: str) -> str:
    """The gold answer as the harness sees it: the string after ``####``."""
    m = PATTERNS["gold_marker"].search(answer)
    return m.group(1) if m else ""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _harness_norm(s: str) -> str:
    s = s.strip()
    for pattern in _HARNESS_IGNORE:
        s = pattern.sub("", s)
    return s.strip().lower()


def _to_float(m: re.Match) -> float | None:
    """The value of a number token, or None when it is malformed, ambiguous (a time, a magnitude
    suffix, a grouped-or-mixed number) or divides by zero."""
    if m.group("magnitude") or m.group("frac_bad") is not None:
        return None
    whole, latex = m.group("whole"), m.group("frac_num") is not None
    if latex:
        body, den, exponent = _frac_argument(m.group("frac_num")), _frac_argument(m.group("frac_den")), ""
    else:
        body, den, exponent = m.group("body"), m.group("denominator"), m.group("exponent") or ""
        if whole is not None and re.fullmatch(r"\d{3}", body):  # 1 000/4: 1000/4 or 1 + 0/4?
            return None
    if not all(part is None or PATTERNS["number_body"].fullmatch(part) for part in (body, den)):
        return None
    value = float(_digits(body) + exponent)
    if den is not None:
        den_v = float(_digits(den))
        if den_v == 0:
            return None
        value /= den_v
        if whole is not None:
            if value < 1:  # 1 1/2, 1\frac{1}{2}
                value += int(whole)
            elif latex:  # 2\frac{3}{2}: mixed, or a product?
                return None
            # "2 3/2" is two numbers, the last 3/2
    negative = m.group(0).lstrip().startswith(_MINUS)
    value = -value if negative else value
    return value if math.isfinite(value) else None


def _digits(run: str) -> str:
    return PATTERNS["group_separator"].sub("", run)


def _frac_argument(arg: str) -> str:
    """A LaTeX fraction's argument without its braces and surrounding space."""
    return arg[1:-1].strip() if arg.startswith("{") else arg
