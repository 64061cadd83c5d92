"""Every statistic against a hand computation, and the paired test's calibration."""

import math
import random

import pytest

from gsm8k_lab.stats import (
    bootstrap_interval,
    ks_for,
    majority_vote,
    mcnemar_exact,
    paired_comparison,
    pass_at_k,
    sign_flip_p,
    two_sample_p,
    wilson_interval,
)


def test_wilson_by_hand():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    # 1 of 64: p = 1/64, z^2 = 3.8415; by hand: centre (0.015625 + 0.030012) / 1.060023, half ...
    z2 = 1.959964 ** 2
    p, n = 1 / 64, 64
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = 1.959964 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    assert wilson_interval(1, 64) == pytest.approx((centre - half, centre + half))


def test_pass_at_k_by_hand():
    # n=4 samples, c=1 correct: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2; pass@4 = 1
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 4) == 1.0
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    # pass@1 is the mean accuracy of the samples
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_ks():
    assert ks_for(1) == [1] and ks_for(4) == [1, 2, 4] and ks_for(6) == [1, 2, 4, 6] and ks_for(16) == [1, 2, 4, 8, 16]


def test_majority_vote():
    assert majority_vote([3.0, 5.0, 3.0, None]) == 3.0
    assert majority_vote([5.0, 3.0]) == 5.0  # a tie: the first to appear
    assert majority_vote([None, None]) is None
    assert majority_vote([None, 7.0]) == 7.0


def test_bootstrap_is_seeded_and_sane():
    values = [1, 0, 0, 1, 1, 0, 1, 1, 0, 1] * 5
    a, b = bootstrap_interval(values, seed=3), bootstrap_interval(values, seed=3)
    assert a == b
    lo, hi = a
    assert lo < 0.6 < hi and 0.4 < lo and hi < 0.8
    assert bootstrap_interval([0.5] * 7) == (0.5, 0.5)


def test_mcnemar_by_hand():
    # 1 vs 7 discordant pairs: P(X<=1 | n=8, 1/2) = (1 + 8) / 256; two-sided doubles it
    assert mcnemar_exact(1, 7) == pytest.approx(2 * 9 / 256)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def test_sign_flip_by_hand():
    # differences +1, +1, +1, -0.5: sum 2.5; of the 16 sign patterns, |sum| >= 2.5 for
    # (+,+,+,-) 2.5, (+,+,+,+) 3.5, and their mirror images: 4 of 16
    p, test = sign_flip_p([1, 1, 1, -0.5, 0, 0])
    assert p == pytest.approx(4 / 16) and "exact" in test
    # all four positive and equal: only all-plus and all-minus reach |sum| = 4: 2 of 16
    assert sign_flip_p([0.25] * 4)[0] == pytest.approx(2 / 16)
    assert sign_flip_p([0, 0])[0] == 1.0


def test_paired_comparison_by_hand():
    a = [0.0, 0.25, 0.5, 1.0]
    b = [0.5, 0.25, 1.0, 1.0]
    r = paired_comparison(a, b)
    assert (r.n, r.mean_a, r.mean_b) == (4, pytest.approx(0.4375), pytest.approx(0.6875))
    assert r.difference == pytest.approx(0.25)
    # non-zero differences +0.5, +0.5: |sum| 1.0 is reached by (+,+) and (-,-): 2 of 4
    assert r.p_value == pytest.approx(0.5)
    assert r.ci_low <= r.difference <= r.ci_high


def test_a_clear_difference_resolves():
    rng = random.Random(0)
    a = [rng.random() < 0.2 for _ in range(200)]
    b = [rng.random() < 0.5 for _ in range(200)]
    r = paired_comparison([float(x) for x in a], [float(x) for x in b])
    assert r.resolved and r.ci_low > 0


def test_calibration_two_samplings_of_one_model():
    """Two evaluations of the same model with different sampling seeds: per problem the chance
    of a correct sample is the same in both. Over 200 simulated splits the test calls p < 0.05
    in about 5% of them (it must not find differences that are not there, nor be blind)."""
    rng = random.Random(1234)
    k, problems, splits = 4, 60, 200
    rejections = 0
    for split in range(splits):
        p = [rng.betavariate(0.6, 2.0) for _ in range(problems)]  # hard and easy problems
        a = [sum(rng.random() < q for _ in range(k)) / k for q in p]
        b = [sum(rng.random() < q for _ in range(k)) / k for q in p]
        rejections += paired_comparison(a, b, seed=split).p_value < 0.05
    rate = rejections / splits
    assert 0.01 <= rate <= 0.10, rate


def test_two_sample_permutation_by_hand():
    # x = [0, 1], y = [2, 3]: observed |2.5 - 0.5| = 2; of the C(4,2) = 6 splits only {0,1}|{2,3}
    # and {2,3}|{0,1} reach it: p = 2/6
    assert two_sample_p([0, 1], [2, 3]) == pytest.approx(2 / 6)
    assert two_sample_p([1, 1], [1, 1]) == 1.0
    rng = random.Random(0)
    early = [rng.gauss(0, 1) for _ in range(40)]
    late = [rng.gauss(1.5, 1) for _ in range(40)]
    assert two_sample_p(early, late) < 0.01
