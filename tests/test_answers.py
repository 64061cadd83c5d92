"""Answer extraction and scoring, as a table of hand-written completions.

Each case is (completion as generated, i.e. after the prompt's opening
``<start_working_out>``; gold number; expected extracted value or None; expected verdict).
"""

import pytest

from gsm8k_lab.answers import gold_text, harness_flexible, harness_strict, parse_gold, parse_number
from gsm8k_lab.task import assistant_text, is_correct, parse_completion

W = "2+2 is 4<end_working_out>"  # a short, well-formed reasoning block

CASES = [
    # plain, well formed
    (f"{W}<SOLUTION>4</SOLUTION>", 4, 4, True),
    (f"{W}<SOLUTION> 4 </SOLUTION>", 4, 4, True),
    (f"{W}<SOLUTION>\n4\n</SOLUTION>", 4, 4, True),
    (f"{W}<SOLUTION>5</SOLUTION>", 4, 5, False),
    # currency, units, words around the number
    (f"{W}<SOLUTION>$18.00</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>18 dollars</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>$18</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>The answer is 18.</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>x = 18</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>18 eggs</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>18%</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>+18</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>18.</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>18.5</SOLUTION>", 18, 18.5, False),
    (f"{W}<SOLUTION>0.5</SOLUTION>", 0.5, 0.5, True),
    (f"{W}<SOLUTION>.5</SOLUTION>", 0.5, 0.5, True),
    # thousands separators vs decimal points
    (f"{W}<SOLUTION>1,000</SOLUTION>", 1000, 1000, True),
    (f"{W}<SOLUTION>1.000</SOLUTION>", 1000, 1, False),
    (f"{W}<SOLUTION>$1,234,567.50</SOLUTION>", 1234567.5, 1234567.5, True),
    (f"{W}<SOLUTION>1000</SOLUTION>", 1000, 1000, True),
    # negatives and fractions
    (f"{W}<SOLUTION>-7</SOLUTION>", -7, -7, True),
    (f"{W}<SOLUTION>−7</SOLUTION>", -7, -7, True),
    (f"{W}<SOLUTION>-$7</SOLUTION>", -7, -7, True),
    (f"{W}<SOLUTION>3/4</SOLUTION>", 0.75, 0.75, True),
    (f"{W}<SOLUTION>1/3</SOLUTION>", 0.33, 1 / 3, False),  # tolerance is tight
    (f"{W}<SOLUTION>1/3</SOLUTION>", 0.3333333333, 1 / 3, True),
    (f"{W}<SOLUTION>5/0</SOLUTION>", 5, None, False),
    # scientific notation
    (f"{W}<SOLUTION>1.5e3</SOLUTION>", 1500, 1500, True),
    (f"{W}<SOLUTION>2E2</SOLUTION>", 200, 200, True),
    # several numbers inside the block: the last one counts
    (f"{W}<SOLUTION>5 + 3 = 8</SOLUTION>", 8, 8, True),
    (f"{W}<SOLUTION>18 (16 - 3 - 4 = 9, 9 * 2 = 18)</SOLUTION>", 18, 18, True),
    # several SOLUTION blocks: the last closed one counts
    (f"{W}<SOLUTION>3</SOLUTION> wait <SOLUTION>4</SOLUTION>", 4, 4, True),
    (f"{W}<SOLUTION>4</SOLUTION> wait <SOLUTION>3</SOLUTION>", 4, 3, False),
    (f"{W}<SOLUTION>4</SOLUTION><SOLUTION>oops", 4, 4, True),
    # integer golds compare exactly; a sign counts only when attached
    (f"{W}<SOLUTION>2880002</SOLUTION>", 2880000, 2880002, False),
    (f"{W}<SOLUTION>1000001</SOLUTION>", 1000000, 1000001, False),
    (f"{W}<SOLUTION>2,880,000</SOLUTION>", 2880000, 2880000, True),
    (f"{W}<SOLUTION>20 - 5</SOLUTION>", -5, 5, False),
    (f"{W}<SOLUTION>20 - 5</SOLUTION>", 5, 5, True),
    (f"{W}<SOLUTION>20-5</SOLUTION>", 5, 5, True),
    (f"{W}<SOLUTION>- 5</SOLUTION>", 5, 5, True),
    (f"{W}<SOLUTION>$ 5</SOLUTION>", 5, 5, True),
    (f"{W}<SOLUTION>12.0000001</SOLUTION>", 12, 12.0000001, False),
    # numbers in the reasoning only
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18<end_working_out>", 18, None, False),
    ("The answer is 18.", 18, None, False),
    # empty and unclosed tags
    (f"{W}<SOLUTION></SOLUTION>", 18, None, False),
    (f"{W}<SOLUTION>   </SOLUTION>", 18, None, False),
    (f"{W}<SOLUTION>eighteen</SOLUTION>", 18, None, False),
    (f"{W}<SOLUTION>18", 18, 18, True),
    (f"{W}<SOLUTION>", 18, None, False),
    (f"{W}</SOLUTION>18", 18, None, False),
    # letters before the digits: a currency code, a multiplication sign
    (f"{W}<SOLUTION>x2</SOLUTION>", 2, 2, True),
    (f"{W}<SOLUTION>USD18</SOLUTION>", 18, 18, True),
    (f"{W}<SOLUTION>x10</SOLUTION>", 10, 10, True),
    # a run of digits, dots and commas is read whole: malformed runs are no answer, never a part
    (f"{W}<SOLUTION>2,880,0000</SOLUTION>", 2880000, None, False),
    (f"{W}<SOLUTION>1,0005</SOLUTION>", 1000, None, False),
    (f"{W}<SOLUTION>1,0005</SOLUTION>", 10005, None, False),
    (f"{W}<SOLUTION>3,2</SOLUTION>", 2, None, False),
    (f"{W}<SOLUTION>18.0.1</SOLUTION>", 18, None, False),
    (f"{W}<SOLUTION>5 + 3 = 3,2</SOLUTION>", 3, None, False),  # not the earlier number either
    (f"{W}<SOLUTION>1000,000</SOLUTION>", 1000000, None, False),
    (f"{W}<SOLUTION>1,000.</SOLUTION>", 1000, 1000, True),  # a full stop after the number
    (f"{W}<SOLUTION>3, 2</SOLUTION>", 2, 2, True),  # a list: the last number
    # mixed numbers
    (f"{W}<SOLUTION>1 1/2</SOLUTION>", 1.5, 1.5, True),
    (f"{W}<SOLUTION>1 1/2</SOLUTION>", 0.5, 1.5, False),
    (f"{W}<SOLUTION>-2 3/4</SOLUTION>", -2.75, -2.75, True),
    (f"{W}<SOLUTION>2 3/2</SOLUTION>", 1.5, 1.5, True),  # not a mixed number: 3/2 is the last
    # thousands grouped by a space, a no-break space (U+00A0), a narrow one (U+202F), a thin one
    # (U+2009) or LaTeX's \, and {,}: three-digit groups after a one-to-three-digit head
    (f"{W}<SOLUTION>10 000</SOLUTION>", 10000, 10000, True),
    (f"{W}<SOLUTION>7\u00a0000</SOLUTION>", 7000, 7000, True),
    (f"{W}<SOLUTION>7\u202f000</SOLUTION>", 7000, 7000, True),
    (f"{W}<SOLUTION>1\u2009000</SOLUTION>", 1000, 1000, True),
    (f"{W}<SOLUTION>20 000 000</SOLUTION>", 20000000, 20000000, True),
    (f"{W}<SOLUTION>$10 000.50</SOLUTION>", 10000.5, 10000.5, True),
    (f"{W}<SOLUTION>-10 000</SOLUTION>", -10000, -10000, True),
    (f"{W}<SOLUTION>10\\,000</SOLUTION>", 10000, 10000, True),
    (f"{W}<SOLUTION>10{{,}}000</SOLUTION>", 10000, 10000, True),
    (f"{W}<SOLUTION>She sold 5 300 eggs.</SOLUTION>", 5300, 5300, True),  # grouped before the last number
    (f"{W}<SOLUTION>3 14</SOLUTION>", 314, 14, False),  # not a three-digit group: two numbers
    # a grouping that breaks the rule is no answer, never its head or its tail
    (f"{W}<SOLUTION>1234 567</SOLUTION>", 567, None, False),
    (f"{W}<SOLUTION>20 000 0000</SOLUTION>", 0, None, False),
    (f"{W}<SOLUTION>10 000,5</SOLUTION>", 10000, None, False),
    (f"{W}<SOLUTION>1,000 000</SOLUTION>", 0, None, False),
    (f"{W}<SOLUTION>10  000</SOLUTION>", 0, None, False),  # two spaces
    (f"{W}<SOLUTION>10'000</SOLUTION>", 0, None, False),  # an unrecognised separator: the tail starts with 0
    (f"{W}<SOLUTION>05</SOLUTION>", 5, None, False),
    (f"{W}<SOLUTION>1 000/4</SOLUTION>", 250, None, False),  # 1000/4 or the mixed 1 0/4?
    # an en dash or a minus sign attached like '-' is a minus; glued to a word it is a range or a dash
    (f"{W}<SOLUTION>\u20135</SOLUTION>", -5, -5, True),
    (f"{W}<SOLUTION>\u22125</SOLUTION>", -5, -5, True),
    (f"{W}<SOLUTION>\u2013$5</SOLUTION>", -5, -5, True),
    (f"{W}<SOLUTION>3\u20135</SOLUTION>", 5, 5, True),
    (f"{W}<SOLUTION>20 \u2013 5</SOLUTION>", 5, 5, True),
    # LaTeX fractions read as a/b, or as no answer; never their denominator
    (f"{W}<SOLUTION>\\frac{{1}}{{2}}</SOLUTION>", 0.5, 0.5, True),
    (f"{W}<SOLUTION>\\frac{{1}}{{2}}</SOLUTION>", 2, 0.5, False),
    (f"{W}<SOLUTION>\\dfrac{{3}}{{4}}</SOLUTION>", 0.75, 0.75, True),
    (f"{W}<SOLUTION>\\tfrac{{1}}{{4}}</SOLUTION>", 0.25, 0.25, True),
    (f"{W}<SOLUTION>\\frac12</SOLUTION>", 0.5, 0.5, True),
    (f"{W}<SOLUTION>$\\boxed{{\\frac{{1,000}}{{4}}}}$</SOLUTION>", 250, 250, True),
    (f"{W}<SOLUTION>1\\frac{{1}}{{2}}</SOLUTION>", 1.5, 1.5, True),
    (f"{W}<SOLUTION>-\\frac{{1}}{{2}}</SOLUTION>", -0.5, -0.5, True),
    (f"{W}<SOLUTION>\\frac{{x}}{{2}}</SOLUTION>", 2, None, False),
    (f"{W}<SOLUTION>\\frac{{\\frac{{1}}{{2}}}}{{3}}</SOLUTION>", 3, None, False),
    (f"{W}<SOLUTION>\\frac{{1}}{{2</SOLUTION>", 2, None, False),
    (f"{W}<SOLUTION>2\\frac{{3}}{{2}}</SOLUTION>", 1.5, None, False),  # mixed 3.5, or 2 times 3/2?
    # a colon inside a run is a time or a ratio: no answer, never the minutes
    (f"{W}<SOLUTION>7:30</SOLUTION>", 30, None, False),
    (f"{W}<SOLUTION>3:1</SOLUTION>", 1, None, False),
    (f"{W}<SOLUTION>Answer:30</SOLUTION>", 30, 30, True),  # a label's colon is not inside a run
    # a magnitude suffix glued to the number: no answer, never the bare digits
    (f"{W}<SOLUTION>2k</SOLUTION>", 2, None, False),
    (f"{W}<SOLUTION>2k</SOLUTION>", 2000, None, False),
    (f"{W}<SOLUTION>$5K</SOLUTION>", 5, None, False),
    (f"{W}<SOLUTION>3m</SOLUTION>", 3, None, False),
    (f"{W}<SOLUTION>1.5M</SOLUTION>", 1.5, None, False),
    (f"{W}<SOLUTION>2bn</SOLUTION>", 2, None, False),
    (f"{W}<SOLUTION>5km</SOLUTION>", 5, 5, True),  # a unit symbol longer than the suffix still reads
    (f"{W}<SOLUTION>10min</SOLUTION>", 10, 10, True),
    # nothing at all
    ("", 0, None, False),
    # code is never run
    (f"{W}<SOLUTION>__import__('os').system('echo hi')</SOLUTION>", 0, None, False),
]


@pytest.mark.parametrize("completion,gold,expected,verdict", CASES)
def test_extraction_table(completion, gold, expected, verdict):
    parsed = parse_completion(assistant_text(completion))
    if expected is None:
        assert parsed.value is None
        assert not parsed.has_answer
    else:
        assert parsed.value == pytest.approx(expected)
        assert parsed.has_answer
    assert is_correct(completion, gold) is verdict


def test_table_is_large_enough():
    assert len(CASES) >= 40


def test_no_two_gsm8k_golds_match_each_other():
    """The comparison separates every pair of distinct gold answers in both splits."""
    from gsm8k_lab.answers import numbers_match
    from gsm8k_lab.data import load_split

    golds = sorted({p.gold for split in ("train", "test") for p in load_split(split)})
    assert len(golds) > 900
    for a, b in zip(golds, golds[1:]):  # sorted: the closest pairs are neighbours
        assert not numbers_match(a, b) and not numbers_match(b, a), (a, b)
    assert all(numbers_match(g, g) for g in golds)


@pytest.mark.parametrize("completion,thinking", [
    ("step one<end_working_out><SOLUTION>1</SOLUTION>", True),
    ("   <end_working_out><SOLUTION>1</SOLUTION>", False),
    ("no closing tag <SOLUTION>1</SOLUTION>", False),
    ("<start_working_out>x<end_working_out><SOLUTION>1</SOLUTION>", True),
])
def test_thinking(completion, thinking):
    assert parse_completion(assistant_text(completion)).has_thinking is thinking


def test_parsed_records_closure_and_block_count():
    p = parse_completion(assistant_text(f"{W}<SOLUTION>1</SOLUTION><SOLUTION>2</SOLUTION>"))
    assert p.closed and p.n_solution_blocks == 2 and p.value == 2
    q = parse_completion(assistant_text(f"{W}<SOLUTION>7"))
    assert not q.closed and q.n_solution_blocks == 0 and q.value == 7


@pytest.mark.parametrize("answer,gold", [
    ("a\n#### 72", 72),
    ("a\n#### 1,000", 1000),
    ("a\n#### -3", -3),
    ("a\n#### 0.5", 0.5),
    ("cost <<2*3=6>>6\n#### $6", 6),
])
def test_parse_gold(answer, gold):
    assert parse_gold(answer) == pytest.approx(gold)


def test_parse_gold_without_marker_raises():
    with pytest.raises(ValueError):
        parse_gold("the answer is 5")


def test_parse_number_none_and_empty():
    assert parse_number(None) is None
    assert parse_number("") is None
    assert parse_number("no digits here") is None


@pytest.mark.parametrize("text,gold,strict,flexible", [
    ("so 5 + 3 = 8\n#### 8", "8", True, True),
    ("so the answer is 8.", "8", False, True),
    ("#### 1,000 apples", "1000", True, True),  # commas are dropped before comparing
    ("The total is $1,000.", "1,000", False, True),
    ("#### 7 then 9", "7", True, False),
    ("nothing", "7", False, False),
])
def test_harness_scores(text, gold, strict, flexible):
    assert harness_strict(text, gold) is strict
    assert harness_flexible(text, gold) is flexible


def test_gold_text():
    assert gold_text("x\n#### 1,000") == "1,000"
