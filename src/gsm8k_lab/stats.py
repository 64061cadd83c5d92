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
  evaluated on the same problems, with a paired bootstrap 95% interval and a
  sign-flip permutation p-value (exact when the problems with a non-zero
  difference are few, Monte Carlo otherwise).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Z95 = 1.959964
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
    """``b - a`` on the same problems: the mean difference, its 95% interval and a two-sided p."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # which test gave p

    @property
    def resolved(self) -> bool:
        return self.p_value < 0.05


def paired_comparison(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Paired:
    """Compare per-problem scores (each in [0, 1], e.g. the share of a problem's samples that are
    correct) of two runs on the same problems: paired bootstrap interval, sign-flip p."""
    if len(a) != len(b):
        raise ValueError("paired scores need the same problems")
    diffs = [y - x for x, y in zip(a, b)]
    lo, hi = bootstrap_interval(diffs, seed=seed)
    p, test = sign_flip_p(diffs, seed=seed)
    return Paired(len(diffs), _mean(a), _mean(b), _mean(diffs), lo, hi, p, test)


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


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
