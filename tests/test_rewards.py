"""GRPO rewards on a table of completions (text after the prompt's <start_working_out>)."""

import itertools

import pytest

from gsm8k_lab.rewards import (
    REWARD_FUNCTIONS,
    answer_correct,
    format_approx,
    format_exact,
    number_check,
    total_reward,
)
from gsm8k_lab.task import is_correct

GOOD = "16 - 3 - 4 = 9, 9 * 2 = 18<end_working_out><SOLUTION>18</SOLUTION>"

# completion, gold, format_exact, format_approx, answer_correct, number_check
TABLE = [
    (GOOD, 18, 1.0, 0.75, 4.0, 0.5),
    (GOOD, 17, 1.0, 0.75, 0.0, 0.5),
    (GOOD + "\n", 18, 1.0, 0.75, 4.0, 0.5),
    ("9*2=18<end_working_out>\n<SOLUTION>$18</SOLUTION>", 18, 1.0, 0.75, 4.0, 0.5),
    ("9*2=18<end_working_out><SOLUTION>18 dollars</SOLUTION>", 18, 1.0, 0.75, 4.0, 0.0),
    ("9*2=18<end_working_out><SOLUTION>18</SOLUTION> extra talk", 18, 0.0, 0.75, 4.0, 0.5),
    ("<end_working_out><SOLUTION>18</SOLUTION>", 18, 0.0, 0.75, 4.0, 0.5),  # empty reasoning
    # evaluation reads the last block, or an unclosed one: correct there, correct here; form costs format points
    ("x<end_working_out><SOLUTION>17</SOLUTION><SOLUTION>18</SOLUTION>", 18, 0.0, -0.25, 4.0, 0.5),
    ("x<end_working_out><SOLUTION>17</SOLUTION><SOLUTION>18</SOLUTION>", 17, 0.0, -0.25, 0.0, 0.5),
    ("x<end_working_out><SOLUTION>18", 18, 0.0, 0.25, 4.0, 0.5),
    ("<SOLUTION><SOLUTION>72", 72, 0.0, -0.75, 4.0, 0.0),
    ("the answer is 18", 18, 0.0, -0.75, 0.0, -0.5),
    ("x<end_working_out><SOLUTION></SOLUTION>", 18, 0.0, 0.75, 0.0, -0.5),
    ("x<end_working_out><SOLUTION>eighteen</SOLUTION>", 18, 1.0, 0.75, 0.0, -0.5),  # form right, no number
    ("x<end_working_out><end_working_out><SOLUTION>18</SOLUTION>", 18, 0.0, 0.25, 4.0, 0.5),
    # a reasoning block left open, or closed after the answer: format points lost, the answer still counts
    ("9*2=18<SOLUTION>18</SOLUTION>", 18, 0.0, 0.25, 4.0, 0.5),
    ("9*2=18<SOLUTION>18</SOLUTION><end_working_out>", 18, 0.0, 0.75, 4.0, 0.5),
    # a sign counts only when attached: "20 - 2" is not -2
    ("x<end_working_out><SOLUTION>20 - 2</SOLUTION>", -2, 1.0, 0.75, 0.0, 0.0),
    ("x<end_working_out><SOLUTION>-2</SOLUTION>", -2, 1.0, 0.75, 4.0, 0.5),
    # a bare number is one the scorer reads, in any form it reads: spaced thousands, an en dash
    ("x<end_working_out><SOLUTION>10 000</SOLUTION>", 10000, 1.0, 0.75, 4.0, 0.5),
    ("x<end_working_out><SOLUTION>–5</SOLUTION>", -5, 1.0, 0.75, 4.0, 0.5),
    ("x<end_working_out><SOLUTION>7:30</SOLUTION>", 30, 1.0, 0.75, 0.0, -0.5),
    ("x<end_working_out><SOLUTION>2k</SOLUTION>", 2, 1.0, 0.75, 0.0, -0.5),
]


@pytest.mark.parametrize("completion,gold,exact,approx,correct,number", TABLE)
def test_reward_table(completion, gold, exact, approx, correct, number):
    assert format_exact([completion]) == [exact]
    assert format_approx([completion]) == [approx]
    assert answer_correct([completion], gold=[gold]) == [correct]
    assert number_check([completion]) == [number]
    assert total_reward(completion, gold) == pytest.approx(exact + approx + correct + number)


def test_batch_and_conversational_inputs():
    convo = [[{"role": "assistant", "content": GOOD}]]
    assert answer_correct(convo, gold=[18.0]) == [4.0]
    assert format_exact([GOOD, "nope"]) == [1.0, 0.0]
    assert [f.__name__ for f in REWARD_FUNCTIONS] == ["format_exact", "format_approx", "answer_correct",
                                                       "number_check"]


def test_correct_beats_everything_wrong():
    best_wrong = total_reward(GOOD, 17)
    worst_right = total_reward("x<end_working_out><SOLUTION>18 apples and more</SOLUTION> tail", 18)
    assert worst_right > best_wrong
    # the sloppiest format a correct answer can have still beats the tidiest wrong answer:
    # end tag missing or doubled, words around the number, text after the block
    for sloppy in ("x<end_working_out><end_working_out><SOLUTION>it is 18</SOLUTION> bye",
                   "<end_working_out><SOLUTION>18 things</SOLUTION><end_working_out>", "<SOLUTION><SOLUTION>18"):
        assert is_correct(sloppy, 18) and total_reward(sloppy, 18) > best_wrong


def test_correctness_outweighs_the_whole_format_range():
    from gsm8k_lab.rewards import ANSWER_CORRECT, FORMAT_RANGE

    low, high = FORMAT_RANGE
    assert (low, high) == (-1.25, 2.25)
    assert ANSWER_CORRECT + low > high  # any correct completion outscores any wrong one
    # the bounds are reached by real completions
    assert sum(f(["the answer"])[0] for f in (format_exact, format_approx, number_check)) == low
    assert sum(f([GOOD])[0] for f in (format_exact, format_approx, number_check)) == high


#: A grammar of completion pieces: every tag the format uses, right and wrong numbers (a malformed
#: one and a near miss among them), words and whitespace.
PIECES = ["<start_working_out>", "<end_working_out>", "<SOLUTION>", "</SOLUTION>", "72", "7", "72.5", "x", " "]


def test_every_correct_completion_outranks_every_wrong_one():
    """Exhaustively over the grammar's completions up to five pieces (66,430 of them): the lowest
    total reward of a completion evaluation scores correct is above the highest of a wrong one, and
    each reward stays inside its documented range."""
    from gsm8k_lab.rewards import FORMAT_RANGE

    worst_right, best_wrong, counts = float("inf"), float("-inf"), [0, 0]
    for length in range(6):
        for pieces in itertools.product(PIECES, repeat=length):
            text = "".join(pieces)
            exact, approx, number = format_exact([text])[0], format_approx([text])[0], number_check([text])[0]
            answer = answer_correct([text], gold=[72])[0]
            right = is_correct(text, 72)
            assert answer == (4.0 if right else 0.0), text
            assert FORMAT_RANGE[0] <= exact + approx + number <= FORMAT_RANGE[1], text
            total = exact + approx + number + answer
            counts[right] += 1
            if right:
                worst_right = min(worst_right, total)
            else:
                best_wrong = max(best_wrong, total)
    assert counts[0] > 1000 and counts[1] > 1000
    assert worst_right > best_wrong
    assert best_wrong == 2.25  # the tidy wrong answer


def test_every_example_in_the_task_and_reward_docstrings_holds():
    """The examples a reader copies from the docstrings are run, so they cannot go stale."""
    import doctest

    from gsm8k_lab import rewards, task

    for module in (rewards, task):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
