"""Every statistic against a hand computation, and the paired test's calibration."""

import math
import random

import pytest

from gsm8k_lab.stats import (
    Z95,
    bootstrap_interval,
    detectable_difference,
    hierarchical_bootstrap,
    holm,
    holm_testable,
    ks_for,
    majority_vote,
    mcnemar_exact,
    mcnemar_min_p,
    newcombe_paired_interval,
    paired_comparison,
    pass_at_k,
    sign_flip_p,
    tarone,
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
    r = paired_comparison(a, b, samples=4)
    assert (r.n, r.mean_a, r.mean_b) == (4, pytest.approx(0.4375), pytest.approx(0.6875))
    assert r.difference == pytest.approx(0.25)
    # non-zero differences +0.5, +0.5: |sum| 1.0 is reached by (+,+) and (-,-): 2 of 4
    assert r.p_value == pytest.approx(0.5)
    assert r.ci_low <= r.difference <= r.ci_high and r.interval == "two-stage bootstrap"


def test_a_clear_difference_resolves():
    rng = random.Random(0)
    a = [rng.random() < 0.2 for _ in range(200)]
    b = [rng.random() < 0.5 for _ in range(200)]
    r = paired_comparison([float(x) for x in a], [float(x) for x in b])
    assert r.test == "exact McNemar" and r.interval.startswith("Newcombe")
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
        rejections += paired_comparison(a, b, samples=k, seed=split).p_value < 0.05
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


def test_newcombe_paired_interval_published_and_by_hand():
    # Fagerland, Lydersen & Laake (2013), airway hyper-responsiveness (Bentur et al.): the table
    # [[1, 1], [7, 12]]; rows = before, columns = after; the difference before - after is -6/21,
    # and their Newcombe square-and-add interval is -0.507 to -0.026.
    lo, hi = newcombe_paired_interval(both=1, only_a=7, only_b=1, neither=12)  # b = before
    assert (round(lo, 3), round(hi, 3)) == (-0.507, -0.026)
    # by hand, with phi != 0: [[59, 6], [16, 80]], n = 161; p1 = 65/161 (b), p2 = 75/161 (a).
    # both*neither - only_a*only_b = 4720 - 96 = 4624 > n/2, so phi = (4624 - 80.5) / sqrt(65*96*75*86)
    n, x1, x2 = 161, 65, 75
    phi = (4624 - 80.5) / math.sqrt(65 * 96 * 75 * 86)
    assert phi == pytest.approx(4543.5 / 6344.1, abs=1e-4)  # sqrt(40,248,000) = 6344.1
    (l1, u1), (l2, u2) = wilson_interval(x1, n), wilson_interval(x2, n)
    p1, p2 = x1 / n, x2 / n
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    assert newcombe_paired_interval(59, 16, 6, 80) == pytest.approx((low, high))
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    # no discordant problems: difference 0, but the interval keeps a width
    lo, hi = newcombe_paired_interval(both=3, only_a=0, only_b=0, neither=17)
    assert lo < 0 < hi and hi - lo > 0.1


def test_binary_comparison_uses_newcombe_and_mcnemar():
    a = [1, 1, 0, 0, 0, 1] * 5
    b = [1, 1, 1, 1, 0, 1] * 5
    r = paired_comparison(a, b)
    assert (r.only_a, r.only_b, r.test) == (0, 10, "exact McNemar")
    assert r.p_value == pytest.approx(mcnemar_exact(0, 10))
    assert (r.ci_low, r.ci_high) == pytest.approx(newcombe_paired_interval(15, 0, 10, 5))
    same = paired_comparison(a, a)
    assert same.difference == 0 and same.ci_low < 0 < same.ci_high and same.p_value == 1.0


def test_sampled_interval_does_not_collapse_when_every_difference_is_equal():
    a = [0.25] * 30  # 1 of 4 samples correct on every problem
    b = [0.75] * 30  # 3 of 4
    r = paired_comparison(a, b, samples=4)
    assert r.difference == pytest.approx(0.5)
    assert r.ci_low < 0.5 < r.ci_high and r.ci_high - r.ci_low > 0.1
    # the plain bootstrap over problems would say +50% to +50%
    assert bootstrap_interval([0.5] * 30) == (0.5, 0.5)
    with pytest.raises(ValueError):
        paired_comparison(a, b)  # shares without their sample count


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_detectable_difference_solves_connors_formula():
    # Connor (1987): n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2; the d returned for n = 100,
    # psi = 0.2 gives back n = 100
    z_b = 0.841621
    d = detectable_difference(100, discordant=0.2)
    n_back = (Z95 * math.sqrt(0.2) + z_b * math.sqrt(0.2 - d * d)) ** 2 / d ** 2
    assert n_back == pytest.approx(100, rel=1e-4) and d == pytest.approx(0.1238, abs=1e-4)
    # a stricter level needs a larger difference; too few problems detect nothing
    assert detectable_difference(100, discordant=0.2, alpha=0.01) > d
    assert detectable_difference(5, discordant=0.1) is None
    assert detectable_difference(100, discordant=0.0) is None
    # several samples: (z_a + z_b) sd / sqrt(n) = (1.96 + 0.8416) * 0.5 / 8
    assert detectable_difference(64, sd=0.5) == pytest.approx((Z95 + z_b) * 0.5 / 8, rel=1e-5)


# --------------------------------------------------------------------------
# seed-level comparison, discrete-test screening
# --------------------------------------------------------------------------
def _binary(rng, seeds, problems, rate):
    return [[float(rng.random() < rate) for _ in range(problems)] for _ in range(seeds)]


def test_hierarchical_bootstrap_with_one_seed_is_the_paired_problem_bootstrap():
    import numpy as np

    rng = random.Random(5)
    a, b = _binary(rng, 1, 40, 0.6), _binary(rng, 1, 40, 0.45)
    r = hierarchical_bootstrap(a, b, n_boot=2000, seed=7)
    # direct: the documented problem stream, the mean of the per-problem differences a - b
    d = np.array(a[0]) - np.array(b[0])
    idx = np.random.default_rng([7, 0]).integers(0, 40, size=(2000, 40))
    reps = np.sort(d[idx].mean(axis=1))
    k = 50  # smallest k with 2k / 2000 >= 0.05
    assert r.diff == pytest.approx(d.mean())
    assert (r.low, r.high) == pytest.approx((reps[k - 1], reps[2000 - k]))
    assert r.se == pytest.approx(reps.std(ddof=1))
    assert r.p == pytest.approx(min(1.0, 2 * min((reps <= 0).sum(), (reps >= 0).sum()) / 2000))
    assert (r.seeds, r.problems, r.per_seed, r.same_sign) == ((1, 1), 40, [pytest.approx(d.mean())], 1)
    # and by hand: the bootstrap SD of a mean of n resampled values is sqrt(mean((d - mean d)^2) / n)
    big = hierarchical_bootstrap(a, b, n_boot=20000)
    assert big.se == pytest.approx(math.sqrt(((d - d.mean()) ** 2).mean() / 40), rel=0.03)


def test_hierarchical_bootstrap_identical_arms():
    seed_scores = [1, 0, 1, 1, 0, 0, 1, 0]
    same = [seed_scores] * 3
    r = hierarchical_bootstrap(same, same)
    assert (r.diff, r.low, r.high, r.se, r.p) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert r.per_seed == [0.0, 0.0, 0.0] and r.same_sign == 3  # every zero shares the sign of 0
    # identical arms of distinct seeds: seeds are resampled independently per arm, so replicates
    # spread around 0, but the observed difference is 0 and the test finds nothing
    rng = random.Random(2)
    seeds = _binary(rng, 3, 30, 0.5)
    r = hierarchical_bootstrap(seeds, seeds)
    assert r.diff == 0.0 and r.low < 0 < r.high and r.p > 0.5


def test_hierarchical_bootstrap_all_right_vs_all_wrong():
    a, b = [[1.0] * 20] * 3, [[0.0] * 20] * 2
    r = hierarchical_bootstrap(a, b, n_boot=5000)
    assert (r.diff, r.low, r.high, r.se) == (1.0, 1.0, 1.0, 0.0)
    assert r.p == 2 / 5000  # every replicate is 1: the floor, one replicate per tail
    assert r.per_seed == [1.0, 1.0] and r.same_sign == 2 and r.seeds == (3, 2)
    assert r.detectable == 0.0


def test_hierarchical_bootstrap_seeds_that_disagree_by_hand():
    a = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]  # means 0.5, 0.25, 0.75
    b = [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]  # means 0, 0.5, 0.5
    r = hierarchical_bootstrap(a, b, n_boot=2000)
    assert r.diff == pytest.approx(6 / 12 - 4 / 12)
    assert r.per_seed == pytest.approx([0.5, -0.25, 0.25])
    assert r.same_sign == 2  # +0.5 and +0.25 share the sign of +1/6; -0.25 does not
    # fewer seeds in b: only the first two seeds pair up
    r2 = hierarchical_bootstrap(a, b[:2], n_boot=2000)
    assert r2.seeds == (3, 2) and r2.per_seed == pytest.approx([0.5, -0.25]) and r2.same_sign == 1
    assert r2.diff == pytest.approx(6 / 12 - 2 / 8)


def test_hierarchical_bootstrap_is_deterministic_and_covers_its_estimate(monkeypatch):
    import gsm8k_lab.stats as stats

    rng = random.Random(11)
    a, b = _binary(rng, 3, 60, 0.55), _binary(rng, 2, 60, 0.4)
    first, again = hierarchical_bootstrap(a, b, seed=3), hierarchical_bootstrap(a, b, seed=3)
    assert first == again
    monkeypatch.setattr(stats, "BOOTSTRAP_CHUNK", 333)  # memory bound only: same replicates
    assert hierarchical_bootstrap(a, b, seed=3) == first
    other = hierarchical_bootstrap(a, b, seed=4)
    assert (other.low, other.high, other.se) != (first.low, first.high, first.se)
    for r in (first, other):
        assert r.low <= r.diff <= r.high and r.se > 0
        assert r.detectable == pytest.approx((Z95 + 0.841621) * r.se, rel=1e-5)


def test_hierarchical_bootstrap_p_agrees_with_the_interval():
    """0 lies outside the interval at level 1 - alpha exactly when p < alpha."""
    rng = random.Random(0)
    checked = set()
    for case in range(12):
        a = _binary(rng, 3, 50, 0.5)
        b = _binary(rng, 3, 50, 0.5 - 0.02 * case)
        for alpha in (0.01, 0.05, 0.1, 0.2, 0.5):
            r = hierarchical_bootstrap(a, b, n_boot=1000, seed=case, level=1 - alpha)
            outside = r.low > 0 or r.high < 0
            assert outside == (r.p < alpha), (case, alpha, r)
            checked.add(outside)
    assert checked == {True, False}  # both sides of the rule were exercised


@pytest.mark.parametrize("a,b,message", [
    ([], [[1.0]], "no seeds"),
    ([[1.0]], [], "no seeds"),
    ([[]], [[]], "no problems"),
    ([[1.0, 0.0], [1.0]], [[1.0, 0.0]], "different numbers of problems"),
    ([[1.0, 0.0]], [[1.0, 0.0], [0.0]], "different numbers of problems"),
    ([[1.0, 0.0]], [[1.0, 0.0, 1.0]], "same problems"),
    ([[float("nan")]], [[1.0]], "finite"),
])
def test_hierarchical_bootstrap_refuses_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        hierarchical_bootstrap(a, b)


def test_mcnemar_min_p_by_hand():
    assert mcnemar_min_p(0) == 1.0 and mcnemar_min_p(1) == 1.0  # 2 * 0.5 = 1
    assert mcnemar_min_p(2) == 0.5
    assert mcnemar_min_p(5) == 0.0625 and mcnemar_min_p(6) == 0.03125
    # it is the exact test's p when every discordant pair goes one way
    assert all(mcnemar_min_p(d) == pytest.approx(mcnemar_exact(0, d)) for d in range(30))
    with pytest.raises(ValueError):
        mcnemar_min_p(-1)


def test_tarone_by_hand():
    # m = 1: #{<= 0.05} = 2 > 1; m = 2: #{<= 0.025} = 2 <= 2
    assert tarone([1e-9, 1e-9, 0.25, 0.5, 1.0]) == [True, True, False, False, False]
    # m must grow: m = 1: #{<= 0.05} = 5; m = 2: #{<= 0.025} = 5 > 2; m = 3: #{<= 0.0167} = 4 > 3;
    # m = 4: #{<= 0.0125} = 4 <= 4
    assert tarone([0.001, 0.005, 0.01, 0.012, 0.02]) == [True, True, True, True, False]
    # every test small: m = 3, all testable; none can reject: m = 1, none testable
    assert tarone([0.001] * 3) == [True] * 3
    assert tarone([1.0, 0.5]) == [False, False]
    assert tarone([]) == []
    # with McNemar: discordant pairs 12, 9, 3, 1, 0 -> min p 2/4096, 2/512, 0.25, 1, 1
    assert tarone([mcnemar_min_p(d) for d in (12, 9, 3, 1, 0)]) == [True, True, False, False, False]
    # a stricter alpha: m = 1: #{<= 0.01} = 2; m = 2: #{<= 0.005} = 2
    assert tarone([0.004, 0.009, 0.02], alpha=0.01) == [True, False, False]


def test_holm_testable_by_hand():
    # among the testable 0.01, 0.04, 0.02: 0.01*3 = 0.03, 0.02*2 = 0.04, 0.04*1 = 0.04
    assert holm_testable([0.01, 0.04, 0.3, 0.02], [True, True, False, True]) == [
        pytest.approx(0.03), pytest.approx(0.04), None, pytest.approx(0.04)]
    # plain Holm over all four is weaker: 0.04, 0.08, 0.3, 0.06
    assert holm([0.01, 0.04, 0.3, 0.02]) == pytest.approx([0.04, 0.08, 0.3, 0.06])
    assert holm_testable([0.2, 0.5], [False, False]) == [None, None]
    assert holm_testable([0.02, 0.5], [True, True]) == holm([0.02, 0.5])
    assert holm_testable([], []) == []
    with pytest.raises(ValueError):
        holm_testable([0.1, 0.2], [True])
