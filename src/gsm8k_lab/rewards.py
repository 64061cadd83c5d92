"""GRPO reward functions, built on the task's judge (:mod:`gsm8k_lab.task`, one source of truth with evaluation).

Each reward is its own function so TRL logs each mean separately
(``rewards/<name>/mean``). TRL calls them as ``f(prompts, completions, gold=..., **kw)``;
``gold`` is the dataset column with the gold numbers. Completions are the text
generated after the prompt's opening ``<start_working_out>``.

Scales (the total lies in [-1.25, 6.25]):

=================  =====================================================  ==============
reward             what it pays for                                       values
=================  =====================================================  ==============
format_exact       the whole turn is ``…<end_working_out><SOLUTION>…</SOLUTION>``  0 or 1
                   with one non-empty reasoning block, one SOLUTION block
                   and nothing after it
format_approx      each generated tag (end_working_out, SOLUTION,          -0.75 … 0.75
                   /SOLUTION) present exactly once: +0.25, else -0.25
answer_correct     evaluation scores the completion correct                0 or 4
                   (:func:`gsm8k_lab.task.is_correct`, the same judge)
number_check       SOLUTION holds a bare number: 0.5; a number among        -0.5, 0, 0.5
                   words: 0; no readable number: -0.5
=================  =====================================================  ==============

**Every completion that evaluation scores correct outranks every completion it
scores wrong.** ``answer_correct`` pays exactly when evaluation counts the
completion correct (one judge, so reward and accuracy cannot disagree); the
format rewards together span 3.5 (from -1.25 to 2.25) and a correct answer pays
4, so the sloppiest correct completion scores more than the tidiest wrong one
(GRPO ranks completions within a group: a tie would teach "format over answer").
tests/test_rewards.py checks this over every completion of a small grammar of
tags, numbers and noise.

Form is paid for by the format rewards, not withheld from the answer: several
SOLUTION blocks, an unclosed block or a missing reasoning block lose
``format_exact`` and ``format_approx`` points (up to 3.5), never the answer's 4.
Hedging earns nothing at evaluation either, which reads the last block only.
"""

from __future__ import annotations

import re

from .answers import PATTERNS, parse_number
from .task import (
    REASONING_END,
    REASONING_START,
    SOLUTION_END,
    SOLUTION_START,
    assistant_text,
    is_correct,
    parse_completion,
)

FORMAT_EXACT = 1.0
FORMAT_TAG = 0.25
ANSWER_CORRECT = 4.0
NUMBER_BARE = 0.5
NUMBER_MISSING = -0.5

_EXACT = re.compile(
    rf"^\s*{re.escape(REASONING_START)}(?P<reasoning>.+?){re.escape(REASONING_END)}\s*"
    rf"{re.escape(SOLUTION_START)}(?P<solution>.+?){re.escape(SOLUTION_END)}\s*$",
    re.DOTALL,
)
_GENERATED_TAGS = (REASONING_END, SOLUTION_START, SOLUTION_END)


def format_exact(completions, **kwargs) -> list[float]:
    """1 when the whole turn is one reasoning block then one SOLUTION block and nothing after, else 0.

    >>> format_exact(["48/2 = 24<end_working_out><SOLUTION>24</SOLUTION>",
    ...               "48/2 = 24<SOLUTION>24</SOLUTION>"])
    [1.0, 0.0]
    """
    return [FORMAT_EXACT if _is_exact(c) else 0.0 for c in _texts(completions)]


def format_approx(completions, **kwargs) -> list[float]:
    """+0.25 for each generated tag present exactly once, -0.25 for each missing or repeated one.

    >>> format_approx(["24<end_working_out><SOLUTION>24</SOLUTION>", "24<SOLUTION>24"])
    [0.75, -0.25]
    """
    scores = []
    for text in _texts(completions):
        scores.append(sum(FORMAT_TAG if text.count(tag) == 1 else -FORMAT_TAG for tag in _GENERATED_TAGS))
    return scores


def answer_correct(completions, gold, **kwargs) -> list[float]:
    """4 when evaluation's judge scores the completion correct against ``gold``, else 0.

    >>> answer_correct(["...<end_working_out><SOLUTION>72</SOLUTION>", "<SOLUTION>71</SOLUTION>"], gold=[72, 72])
    [4.0, 0.0]
    """
    return [ANSWER_CORRECT if is_correct(text, float(g)) else 0.0 for text, g in zip(_texts(completions), gold)]


def number_check(completions, **kwargs) -> list[float]:
    """0.5 when the SOLUTION block holds a bare number, 0 for a number among words, -0.5 for none.

    >>> number_check(["<SOLUTION>$1,200</SOLUTION>", "<SOLUTION>1200 apples</SOLUTION>", "<SOLUTION>?</SOLUTION>"])
    [0.5, 0.0, -0.5]
    """
    scores = []
    for text in _texts(completions):
        parsed = parse_completion(assistant_text(text))
        if parsed.value is None:
            scores.append(NUMBER_MISSING)
        elif _is_bare_number(parsed.solution or ""):
            scores.append(NUMBER_BARE)
        else:
            scores.append(0.0)
    return scores


#: The rewards GRPO trains with, in logging order.
REWARD_FUNCTIONS = [format_exact, format_approx, answer_correct, number_check]


#: Each reward's lowest and highest value (the table above): figures put them on one scale.
REWARD_RANGES = {"format_exact": (0.0, FORMAT_EXACT), "format_approx": (-3 * FORMAT_TAG, 3 * FORMAT_TAG),
                 "answer_correct": (0.0, ANSWER_CORRECT), "number_check": (NUMBER_MISSING, NUMBER_BARE)}

FORMAT_FUNCTIONS = [format_exact, format_approx, number_check]
#: Lowest and highest sum of the format rewards (the table above).
FORMAT_RANGE = (NUMBER_MISSING - FORMAT_TAG * len(_GENERATED_TAGS),
                FORMAT_EXACT + FORMAT_TAG * len(_GENERATED_TAGS) + NUMBER_BARE)
assert ANSWER_CORRECT > FORMAT_RANGE[1] - FORMAT_RANGE[0], "correctness must outweigh all format rewards"


def total_reward(completion: str, gold: float) -> float:
    """Sum of all rewards for one completion (for tests and reports).

    >>> total_reward("48+24 = 72<end_working_out><SOLUTION>72</SOLUTION>", 72)
    6.25
    """
    return sum(f([completion], gold=[gold])[0] for f in REWARD_FUNCTIONS)


# --------------------------------------------------------------------------
def _texts(completions) -> list[str]:
    """TRL passes strings, or message lists for conversational datasets."""
    out = []
    for c in completions:
        if isinstance(c, list):  # [{"role": "assistant", "content": ...}]
            c = c[0]["content"] if c else ""
        out.append(c)
    return out


def _is_exact(completion: str) -> bool:
    m = _EXACT.match(assistant_text(completion))
    if not m or not m.group("reasoning").strip() or not m.group("solution").strip():
        return False
    # one block of each: no second SOLUTION or reasoning block hidden inside
    text = m.group(0)
    return all(text.count(tag) == 1 for tag in (*_GENERATED_TAGS, REASONING_START))


def _is_bare_number(solution: str) -> bool:
    """The block holds one number and nothing else (a currency sign before it or a percent sign after
    it allowed), read by the scorer's own number rules (``10 000``, ``–5`` and ``\\frac{1}{2}`` too)."""
    text = solution.strip().removesuffix("%").strip()
    return PATTERNS["number"].fullmatch(text) is not None and parse_number(text) is not None
