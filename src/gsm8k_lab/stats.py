"""The statistics of evaluations and comparisons, each checked against a hand computation in the tests.

- :func:`wilson_interval`: 95% interval of a proportion (sound near 0 and 1);
- :func:`pass_at_k`: the unbiased pass@k estimator from n samples with c correct
  (Chen et al., 2021): ``1 - C(n-c, k) / C(n, k)``;
- :func:`majority_vote`: the most common extracted answer among a problem's samples;
- :func:`bootstrap_interval`: a seeded percentile bootstrap over problems for any
  per-problem statistic;
- :func:`mcnemar_exact`: the exact McNemar test on discordant pairs (one sample per problem);
- :func:`two_sample_p`: a permutation test of two independent samples' means
  (a training curve early vs late);
- :func:`paired_comparison`: a difference of per-problem scores between two runs
  evaluated on the same problems, with a 95% interval that is never zero-width
  (Newcombe's paired interval for binary per-problem results, a two-stage
  bootstrap over problems and their samples otherwise), a p-value (exact
  McNemar for binary results, a sign-flip permutation test otherwise) and the
  smallest difference the comparison could detect;
- :func:`newcombe_paired_interval`: Newcombe's (1998) method 10 for the difference
  of two paired proportions, built on Wilson intervals;
- :func:`detectable_difference`: the smallest paired difference found with 80% power;
- :func:`holm`: Holm's step-down adjustment of a family of p-values;
- :func:`hierarchical_bootstrap`: two training methods compared at the level of their
  independent training seeds (seeds resampled within each arm, problems resampled once
  and shared), with an interval, a p-value consistent with it, per-seed differences and
  the smallest difference the design detects;
- :func:`mcnemar_min_p`: the smallest p the exact McNemar test can reach with d discordant pairs;
- :func:`tarone`: Tarone's (1990) screen of a family of discrete tests, leaving out those
  that cannot reach significance; :func:`holm_testable` then adjusts among the rest.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Z95 = 1.959964
POWER = 0.80
BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 10000
EXACT_UP_TO = 16  # enumerate all 2**n sign flips up to this many non-zero differences
SEED_LEVEL_RESAMPLES = 10000
BOOTSTRAP_CHUNK = 1000  # replicates computed at once: bounds memory, not the result


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ks_for(samples: int) -> list[int]:
    """1, 2, 4, ... up to the number of samples (and the number itself)."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return [*ks, samples]


def majority_vote(answers: Sequence[float | None]) -> float | None:
    """The most common answer; a tie goes to the one that appeared first; no answer does not vote."""
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    return next(a for a in votes if counts[a] == best)


def bootstrap_interval(values: Sequence, statistic: Callable[[Sequence], float] | None = None,
                       seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile 95% interval of ``statistic`` (default: the mean) over problems resampled with replacement."""
    stat = statistic or _mean
    n = len(values)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    draws = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    return (draws[int(0.025 * resamples)], draws[min(resamples - 1, int(0.975 * resamples))])


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Paired:
    """``b - a`` on the same problems: the mean difference, its 95% interval, a two-sided p and
    the smallest difference the comparison could detect (two-sided, at ``alpha``, 80% power)."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # which test gave p
    interval: str = ""  # which method gave the interval
    only_a: int | None = None  # binary results: problems only a solved
    only_b: int | None = None
    detectable: float | None = None  # None: no difference is detectable with 80% power

    @property
    def resolved(self) -> bool:
        return self.p_value < 0.05


def paired_comparison(a: Sequence[float], b: Sequence[float], samples: int | tuple[int, int] = 1, seed: int = 0,
                      alpha: float = 0.05) -> Paired:
    """Compare per-problem scores of two runs on the same problems: each score is the share of a
    problem's ``samples`` completions that have the property (correct, an answer), one sample
    count for both runs or one each.

    When every score is 0 or 1 the results are binary per problem: Newcombe's paired interval
    and the exact McNemar test. Otherwise a two-stage bootstrap (problems with replacement, then
    each problem's samples from its observed share) and a sign-flip test; the bootstrap's
    within-problem draws keep it from collapsing to zero width when every difference is equal.
    ``detectable`` is computed at ``alpha`` (pass a corrected level for a family of tests).
    """
    if len(a) != len(b):
        raise ValueError("paired scores need the same problems")
    ka, kb = (samples, samples) if isinstance(samples, int) else samples
    diffs = [y - x for x, y in zip(a, b)]
    n = len(diffs)
    if all(v in (0, 1) for v in (*a, *b)):
        only_a = sum(x > y for x, y in zip(a, b))
        only_b = sum(y > x for x, y in zip(a, b))
        both = sum(x == y == 1 for x, y in zip(a, b))
        lo, hi = newcombe_paired_interval(both, only_a, only_b, n - both - only_a - only_b)
        detectable = detectable_difference(n, discordant=(only_a + only_b) / n if n else 0.0, alpha=alpha)
        return Paired(n, _mean(a), _mean(b), _mean(diffs), lo, hi, mcnemar_exact(only_a, only_b), "exact McNemar",
                      "Newcombe (Wilson)", only_a, only_b, detectable)
    if min(ka, kb) < 1 or (ka == kb == 1):
        raise ValueError(f"scores between 0 and 1 need the number of samples per problem, got {samples}")
    lo, hi = two_stage_bootstrap(a, b, (ka, kb), seed=seed)
    p, test = sign_flip_p(diffs, seed=seed)
    sd = statistics.stdev(diffs) if n > 1 else 0.0
    detectable = detectable_difference(n, sd=sd, alpha=alpha)
    return Paired(n, _mean(a), _mean(b), _mean(diffs), lo, hi, p, test, "two-stage bootstrap",
                  detectable=detectable)


def newcombe_paired_interval(both: int, only_a: int, only_b: int, neither: int,
                             z: float = Z95) -> tuple[float, float]:
    """95% interval of ``p_b - p_a`` for paired binary results (Newcombe 1998, method 10).

    ``both``/``neither``: problems both or neither run solved; ``only_a``/``only_b``: solved by one
    run only. Each proportion gets its Wilson interval; the two are combined by "square and
    add" with the correlation coefficient phi of the 2x2 table, whose numerator
    ``both * neither - only_a * only_b`` is continuity-corrected as Newcombe defines it
    (reduced by n/2 when above n/2, zero between 0 and n/2, unchanged when negative). Never
    zero-width: each Wilson interval has positive width for any n >= 1.
    """
    n = both + only_a + only_b + neither
    if n == 0:
        return (-1.0, 1.0)
    # first proportion p1: the run b; second p2: the run a (so the interval is of p_b - p_a)
    x1, x2 = both + only_b, both + only_a
    p1, p2 = x1 / n, x2 / n
    l1, u1 = wilson_interval(x1, n, z)
    l2, u2 = wilson_interval(x2, n, z)
    margins = x1 * (n - x1) * x2 * (n - x2)
    phi = 0.0
    if margins:
        cross = both * neither - only_a * only_b
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, low), min(1.0, high))


def two_stage_bootstrap(a: Sequence[float], b: Sequence[float], samples: tuple[int, int], seed: int = 0,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile 95% interval of ``mean(b - a)`` when each score is the share of a problem's
    samples: problems are drawn with replacement, then each drawn problem's ``k`` samples are
    drawn again from its observed share (a binomial), so the interval reflects both the
    problems and the finite number of samples per problem."""
    import numpy as np

    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ka, kb = samples
    pick = rng.integers(0, len(xa), size=(resamples, len(xa)))
    da = rng.binomial(ka, xa[pick]) / ka
    db = rng.binomial(kb, xb[pick]) / kb
    draws = np.sort((db - da).mean(axis=1))
    return (float(draws[int(0.025 * resamples)]), float(draws[min(resamples - 1, int(0.975 * resamples))]))


def detectable_difference(n: int, discordant: float | None = None, sd: float | None = None,
                          alpha: float = 0.05, power: float = POWER) -> float | None:
    """The smallest paired difference a two-sided test at ``alpha`` finds with ``power``, on n problems.

    Binary results (``discordant``: the share of problems on which the runs disagree): Connor's
    (1987) sample size for McNemar's test, ``n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2``,
    solved for d (at most psi: a difference cannot exceed the discordance). Scores with several
    samples (``sd``: the standard deviation of the per-problem differences): ``(z_a + z_b) sd / sqrt(n)``.
    None when nothing up to the largest possible difference is detectable (or n is 0).
    """
    z_a, z_b = _z(1 - alpha / 2), _z(power)
    if n <= 0:
        return None
    if sd is not None:
        return (z_a + z_b) * sd / math.sqrt(n) if sd > 0 else None
    psi = discordant or 0.0
    if psi <= 0:
        return None

    def excess(d: float) -> float:  # > 0 once d is detectable
        return math.sqrt(n) * d - z_a * math.sqrt(psi) - z_b * math.sqrt(max(0.0, psi - d * d))

    if excess(psi) < 0:
        return None
    low, high = 0.0, psi
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (low, mid) if excess(mid) >= 0 else (mid, high)
    return high


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input order): the i-th smallest of m is
    multiplied by m - i + 1, and the adjusted values are made non-decreasing in that order.
    Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_testable(p_values: Sequence[float], testable: Sequence[bool]) -> list[float | None]:
    """Holm's adjustment among the testable tests only (see :func:`tarone`); None for the others.

    A test that cannot reach significance at its family's level is left out of the family, so
    the multiplier is the number of testable tests, not of all tests. The left-out tests get
    None (not NaN): they were not tested, and None cannot be mistaken for a p-value in a sum
    or a comparison. Example: p = [0.01, 0.04, 0.3, 0.02] with the third untestable: Holm over
    the other three gives 0.01*3 = 0.03, 0.02*2 = 0.04, 0.04*1 -> 0.04, so
    ``[0.03, 0.04, None, 0.04]`` (plain Holm over all four: 0.04, 0.08, 0.3, 0.06).
    """
    if len(p_values) != len(testable):
        raise ValueError(f"{len(p_values)} p-values but {len(testable)} testable flags")
    kept = [i for i, t in enumerate(testable) if t]
    adjusted: list[float | None] = [None] * len(p_values)
    for i, q in zip(kept, holm([p_values[i] for i in kept])):
        adjusted[i] = q
    return adjusted


def mcnemar_min_p(discordant: int) -> float:
    """The smallest two-sided p the exact McNemar test (:func:`mcnemar_exact`) can give with
    ``discordant`` discordant pairs: every pair on one side, ``min(1, 2 * 0.5**d)``.

    Example: d = 5 -> 2/32 = 0.0625 (never below 0.05, whatever the data); d = 6 -> 0.03125.
    """
    if discordant < 0:
        raise ValueError(f"the number of discordant pairs cannot be negative, got {discordant}")
    return min(1.0, 2 * 0.5 ** discordant)


def tarone(min_ps: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which tests of a family of discrete tests are testable, by Tarone's (1990) rule.

    A discrete test has a smallest attainable p-value (:func:`mcnemar_min_p` for McNemar); a
    test whose smallest p exceeds its Bonferroni level can never reject and only dilutes the
    others. Tarone, "A modified Bonferroni method for discrete data", Biometrics 46 (1990)
    515-522: with M tests, take the smallest m in 1..M such that
    ``K(m) = #{i: min_p_i <= alpha / m} <= m``; the testable tests are those with
    ``min_p_i <= alpha / m`` (at m = M the condition always holds, so m exists). Bonferroni (or
    Holm, :func:`holm_testable`) over the K(m) testable tests controls the family-wise error
    at alpha: each true null among them rejects with probability at most alpha / K(m).

    Example: min ps [1e-9, 1e-9, 0.25, 0.5, 1.0], alpha 0.05: m = 1 gives K = 2 > 1; m = 2 gives
    K = #{<= 0.025} = 2 <= 2, so ``[True, True, False, False, False]``.
    """
    total = len(min_ps)
    for m in range(1, total + 1):
        testable = [p <= alpha / m for p in min_ps]
        if sum(testable) <= m:
            return testable
    return []


@dataclass(frozen=True)
class SeedLevel:
    """Arm A minus arm B over independent training seeds (see :func:`hierarchical_bootstrap`)."""

    diff: float  # observed: mean over seeds and problems of A minus that of B
    low: float  # percentile interval at the requested level
    high: float
    p: float  # two-sided bootstrap p, consistent with the interval; never below 2 / n_boot
    se: float  # standard deviation of the bootstrap replicates
    per_seed: list[float]  # seed i of A minus seed i of B, for i < min(K_a, K_b)
    same_sign: int  # how many per-seed differences have the sign of diff
    seeds: tuple[int, int]  # (K_a, K_b)
    problems: int  # n
    detectable: float  # ~ smallest difference found with 80% power: (z_{1-alpha/2} + z_0.8) * se


def hierarchical_bootstrap(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], *,
                           n_boot: int = SEED_LEVEL_RESAMPLES, seed: int = 0, level: float = 0.95) -> SeedLevel:
    """Compare two training methods at the level of their training seeds.

    ``a`` holds one list per training seed of arm A (K_a of them), each the per-problem scores
    on the same n problems in the same order (0/1, or the share of a problem's samples that are
    correct); ``b`` the same for arm B (K_b seeds; K_a and K_b may differ). The statistic is

        diff = mean_{s,j} A[s][j] - mean_{s,j} B[s][j].

    Each of ``n_boot`` replicates draws K_a seeds of A and, independently, K_b seeds of B with
    replacement, then ONE set of n problem indices with replacement, shared by every seed of both
    arms (problems are crossed with seeds and paired between arms):

        diff* = mean_{s in S_a*, j in J*} A[s][j] - mean_{s in S_b*, j in J*} B[s][j].

    The variance therefore has a seed part (how much training runs differ) and a problem part
    (which problems were drawn); with K = 1 seed per arm it is the paired bootstrap over
    problems. Problem indices come from ``numpy.random.default_rng([seed, 0])`` (one
    ``integers(0, n, size=(n_boot, n))`` stream), seed indices from ``default_rng([seed, 1])``,
    so a result is reproducible from ``seed``.

    With alpha = 1 - level (rounded to 12 decimals, so level 0.95 is alpha 0.05) and the
    replicates sorted, r_(1) <= ... <= r_(B):

    - ``low = r_(k)``, ``high = r_(B+1-k)`` with k the smallest integer such that 2k/B >= alpha
      (the alpha/2 and 1 - alpha/2 percentiles as order statistics);
    - ``p = min(1, 2 * max(1, min(#{r <= 0}, #{r >= 0})) / B)``. Then 0 lies outside
      [low, high] exactly when p < alpha, for any alpha > 2/B, ties at 0 included. p is floored
      at 2/B (one replicate per tail): when every replicate lies on one side of 0 the bootstrap
      only says p < 2/B; a test at a level at or below 2/B needs more replicates;
    - ``se``: the standard deviation of the replicates;
    - ``detectable = (z_{1-alpha/2} + z_0.8) * se``: the smallest true difference this design
      (these seeds, these problems) would find with about 80% power, a normal approximation
      that takes the bootstrap SE as the SE of the difference under the alternative.

    ``per_seed`` pairs seed i of A with seed i of B (for i < min(K_a, K_b)); seeds are not
    naturally paired, so this is a description (do the seeds agree?), not the test;
    ``same_sign`` counts the per-seed differences with the sign of ``diff`` (exact zeros when
    ``diff`` is 0).

    Example: A = [[1, 1, 0, 0], [1, 0, 0, 0]], B = [[0, 0, 0, 0], [1, 1, 0, 0]]: diff = 3/8 - 2/8
    = 0.125; per_seed = [0.5 - 0, 0.25 - 0.5] = [0.5, -0.25]; same_sign = 1.
    """
    import numpy as np

    xa, xb = _seed_matrix(a, "a"), _seed_matrix(b, "b")
    (ka, n), kb = xa.shape, xb.shape[0]
    if xb.shape[1] != n:
        raise ValueError(f"arm a scores {n} problems but arm b scores {xb.shape[1]}; both need the same problems")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    alpha = round(1 - level, 12)

    problem_rng, seed_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    seeds_a = seed_rng.integers(0, ka, size=(n_boot, ka))
    seeds_b = seed_rng.integers(0, kb, size=(n_boot, kb))
    reps = np.empty(n_boot)
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        rows = slice(start, min(n_boot, start + BOOTSTRAP_CHUNK))
        problems = problem_rng.integers(0, n, size=(rows.stop - rows.start, n))
        reps[rows] = (_resampled_sum(xa, problems, seeds_a[rows]) / (ka * n)
                      - _resampled_sum(xb, problems, seeds_b[rows]) / (kb * n))

    k = math.ceil(alpha * n_boot / 2)
    k = max(1, min(n_boot, k))
    while k > 1 and 2 * (k - 1) / n_boot >= alpha:  # k: the smallest with 2k/B >= alpha, as p is compared
        k -= 1
    while k < n_boot and 2 * k / n_boot < alpha:
        k += 1
    ordered = np.sort(reps)
    tail = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    se = float(reps.std(ddof=1)) if n_boot > 1 else 0.0
    diff = float(xa.mean() - xb.mean())
    per_seed = [float(xa[i].mean() - xb[i].mean()) for i in range(min(ka, kb))]
    return SeedLevel(
        diff=diff,
        low=float(ordered[k - 1]),
        high=float(ordered[n_boot - k]),
        p=min(1.0, 2 * max(1, tail) / n_boot),
        se=se,
        per_seed=per_seed,
        same_sign=sum(int(np.sign(d) == np.sign(diff)) for d in per_seed),
        seeds=(ka, kb),
        problems=n,
        detectable=(_z(1 - alpha / 2) + _z(POWER)) * se,
    )


def sign_flip_p(diffs: Sequence[float], seed: int = 0, permutations: int = PERMUTATIONS) -> tuple[float, str]:
    """Two-sided p of the mean paired difference under 'the labels a/b are exchangeable': each
    problem's difference keeps or flips its sign. Exact enumeration for few non-zero differences."""
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return 1.0, "sign-flip (exact)"
    observed = abs(sum(nonzero))
    eps = 1e-12 * max(1.0, observed)
    if len(nonzero) <= EXACT_UP_TO:
        hits = total = 0
        for signs in itertools.product((1, -1), repeat=len(nonzero)):
            total += 1
            hits += abs(sum(s * d for s, d in zip(signs, nonzero))) >= observed - eps
        return hits / total, "sign-flip (exact)"
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) >= observed - eps
               for _ in range(permutations))
    return (hits + 1) / (permutations + 1), "sign-flip (10,000 permutations)"


def two_sample_p(x: Sequence[float], y: Sequence[float], seed: int = 0,
                 permutations: int = PERMUTATIONS) -> float:
    """Two-sided permutation p of the difference of means of two independent samples (e.g. a
    reward early vs late in training): exact for small samples, Monte Carlo otherwise."""
    pooled, nx = [*x, *y], len(x)
    if not x or not y:
        return 1.0
    observed = abs(_mean(y) - _mean(x))
    eps = 1e-12 * max(1.0, observed)
    total = math.comb(len(pooled), nx)
    if total <= 20000:
        hits = 0
        for chosen in itertools.combinations(range(len(pooled)), nx):
            picked = set(chosen)
            a = [pooled[i] for i in picked]
            b = [pooled[i] for i in range(len(pooled)) if i not in picked]
            hits += abs(_mean(b) - _mean(a)) >= observed - eps
        return hits / total
    rng = random.Random(seed)
    hits = 0
    for _ in range(permutations):
        shuffled = pooled[:]
        rng.shuffle(shuffled)
        hits += abs(_mean(shuffled[nx:]) - _mean(shuffled[:nx])) >= observed - eps
    return (hits + 1) / (permutations + 1)


def detectable_from_se(se: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a test with standard error ``se`` finds with ``power``, two-sided at
    ``alpha``: ``(z_{1-alpha/2} + z_power) * se`` (a normal approximation).

    Example: se = 0.05 at alpha 0.05 and 80% power: (1.960 + 0.842) * 0.05 = 0.140.
    """
    return (_z(1 - alpha / 2) + _z(power)) * se


def _seed_matrix(arm: Sequence[Sequence[float]], name: str):
    """One arm's scores as a (seeds, problems) float array, refusing empty, ragged or non-finite input."""
    import numpy as np

    if len(arm) == 0:
        raise ValueError(f"arm {name} has no seeds")
    lengths = sorted({len(scores) for scores in arm})
    if len(lengths) > 1:
        raise ValueError(f"arm {name}: its seeds score different numbers of problems {lengths}; "
                         "every seed needs the same problems in the same order")
    if lengths[0] == 0:
        raise ValueError(f"arm {name} has no problems")
    matrix = np.asarray(arm, dtype=float)
    if not np.isfinite(matrix).all():
        raise ValueError(f"arm {name} has a score that is not a finite number")
    return matrix


def _resampled_sum(scores, problems, seeds):
    """Per replicate: the sum of scores[s][j] over its drawn seeds s and drawn problems j.
    scores: (K, n); problems: (R, n) indices; seeds: (R, K) indices."""
    import numpy as np

    per_seed = np.stack([row[problems].sum(axis=1) for row in scores], axis=1)  # (R, K)
    return np.take_along_axis(per_seed, seeds, axis=1).sum(axis=1)


def _z(q: float) -> float:
    return statistics.NormalDist().inv_cdf(q)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
