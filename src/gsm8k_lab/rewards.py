"""GRPO reward functions, built on :mod:`gsm8k_lab.answers` (one source of truth with evaluation).

Each reward is its own function so TRL logs each mean separately
(``rewards/<name>/mean``). TRL calls them as ``f(prompts, completions, gold=..., **kw)``;
``gold`` is the dataset column with the gold numbers. Completions are the text
generated after the prompt's opening ``<start_working_out>``.

Scales (the total lies in [-1.25, 4.25]; correctness dominates):

=================  =====================================================  ==============
reward             what it pays for                                       values
=================  =====================================================  ==============
format_exact       the whole turn is ``…<end_working_out><SOLUTION>…</SOLUTION>``  0 or 1
                   with one non-empty reasoning block, one SOLUTION block
                   and nothing after it
format_approx      each generated tag (end_working_out, SOLUTION,          -0.75 … 0.75
                   /SOLUTION) present exactly once: +0.25, else -0.25
answer_correct     the SOLUTION number equals the gold number              0 or 2
number_check       SOLUTION holds a bare number: 0.5; a number among        -0.5, 0, 0.5
                   words: 0; no readable number: -0.5
=================  =====================================================  ==============

**The answer reward needs a well-formed answer block**: exactly one closed
SOLUTION block. Evaluation reads the last block, so a policy could otherwise
hedge with several blocks, or keep long unclosed rambles that happen to end
on the right number. Under group normalisation an additive format bonus on a
wrong answer only shifts the group's baseline; gating correctness on the block
keeps "right number, broken format" from ever being the best in a group.
"""

from __future__ import annotations

import re

from .answers import PATTERNS, assistant_text, numbers_match, parse_completion
from .config import REASONING_END, REASONING_START, SOLUTION_END, SOLUTION_START

FORMAT_EXACT = 1.0
FORMAT_TAG = 0.25
ANSWER_CORRECT = 2.0
NUMBER_BARE = 0.5
NUMBER_MISSING = -0.5

_EXACT = re.compile(
    rf"^\s*{re.escape(REASONING_START)}(?P<reasoning>.+?){re.escape(REASONING_END)}\s*"
    rf"{re.escape(SOLUTION_START)}(?P<solution>.+?){re.escape(SOLUTION_END)}\s*$",
    re.DOTALL,
)
_BARE_NUMBER = re.compile(r"^\s*[-+−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?\s*%?\s*$")
_GENERATED_TAGS = (REASONING_END, SOLUTION_START, SOLUTION_END)


def format_exact(completions, **kwargs) -> list[float]:
    return [FORMAT_EXACT if _is_exact(c) else 0.0 for c in _texts(completions)]


def format_approx(completions, **kwargs) -> list[float]:
    scores = []
    for text in _texts(completions):
        scores.append(sum(FORMAT_TAG if text.count(tag) == 1 else -FORMAT_TAG for tag in _GENERATED_TAGS))
    return scores


def answer_correct(completions, gold, **kwargs) -> list[float]:
    scores = []
    for text, g in zip(_texts(completions), gold):
        parsed = parse_completion(assistant_text(text))
        well_formed = parsed.closed and parsed.n_solution_blocks == 1
        scores.append(ANSWER_CORRECT if well_formed and numbers_match(parsed.value, float(g)) else 0.0)
    return scores


def number_check(completions, **kwargs) -> list[float]:
    scores = []
    for text in _texts(completions):
        parsed = parse_completion(assistant_text(text))
        if parsed.value is None:
            scores.append(NUMBER_MISSING)
        elif _BARE_NUMBER.match(parsed.solution or "") and PATTERNS["number"].search(parsed.solution):
            scores.append(NUMBER_BARE)
        else:
            scores.append(0.0)
    return scores


#: The rewards GRPO trains with, in logging order.
REWARD_FUNCTIONS = [format_exact, format_approx, answer_correct, number_check]


def total_reward(completion: str, gold: float) -> float:
    """Sum of all rewards for one completion (for tests and reports)."""
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
