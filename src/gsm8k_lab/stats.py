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
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
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


def _z(q: float) -> float:
    return statistics.NormalDist().inv_cdf(q)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
