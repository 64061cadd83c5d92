"""Numbers as a person writes them: how the answer inside a ``<SOLUTION>`` block is read.

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
- A sign counts only when attached to its number: ``-7`` is negative, but in
  ``20 - 5`` the last number is ``5``, not ``-5``.
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
PATTERNS: dict[str, re.Pattern] = {
    # a number-like token: an optional sign (only when nothing word-like is glued before it) or
    # currency sign, then a mixed number (1 1/2), or a maximal run of digits joined by single dots or
    # commas, with an optional exponent and an optional "/ denominator". The run is taken whole and
    # checked afterwards (see NUMBER_BODY), so 2,880,0000 or 18.0.1 is one malformed token, never
    # 2,880,000 or 18.0 with the rest dropped. Letters may precede the digits (USD18, x10).
    "number": re.compile(
        r"(?:(?<![\w.,])[-+−]\$?|(?<![\d.,])\$\s?|(?<![\d.,]))"
        r"(?:(?P<whole>\d+)\s+(?=\d+\s?/\s?\d))?"
        r"(?P<body>\d+(?:[.,]\d+)*|\.\d+)(?P<exponent>[eE][-+]?\d+)?"
        r"(?:\s?/\s?(?P<denominator>\d+(?:[.,]\d+)*))?"
    ),
    # a well-formed run of digits: thousands groups of exactly three digits, at most one decimal point
    "number_body": re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"),
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
    """The value of a number token, or None when it is malformed (or divides by zero)."""
    body, den = m.group("body"), m.group("denominator")
    if not all(part is None or PATTERNS["number_body"].fullmatch(part) for part in (body, den)):
        return None
    value = float(body.replace(",", "") + (m.group("exponent") or ""))
    if den is not None:
        den_v = float(den.replace(",", ""))
        if den_v == 0:
            return None
        value /= den_v
        if m.group("whole") is not None and value < 1:  # 1 1/2; "2 3/2" is two numbers, the last 3/2
            value += int(m.group("whole"))
    negative = m.group(0).lstrip().startswith(("-", "−"))
    value = -value if negative else value
    return value if math.isfinite(value) else None
