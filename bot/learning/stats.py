"""Beta posteriors for success rates: comparisons, credible intervals, Thompson sampling.

A rate with `s` successes in `n` trials has the posterior Beta(1 + s, 1 + n − s)
(a uniform prior). Comparisons are exact (a finite sum for integer
parameters); intervals are quantiles found by bisection on the exact CDF.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_greater(s1: int, n1: int, s2: int, n2: int) -> float:
    """P(p1 > p2) for p1 ~ Beta(1+s1, 1+n1−s1), p2 ~ Beta(1+s2, 1+n2−s2)."""
    a1, b1, a2, b2 = 1 + s1, 1 + n1 - s1, 1 + s2, 1 + n2 - s2
    if a1 > a2:  # the sum runs over a1 terms: take the shorter one, P(p1 > p2) = 1 − P(p2 > p1)
        return 1.0 - prob_greater(s2, n2, s1, n1)
    # The closed form for integer a1 (a finite sum over i < a1).
    total = 0.0
    for i in range(a1):
        total += math.exp(_log_beta(a2 + i, b1 + b2) - math.log(b1 + i) - _log_beta(1 + i, b1) - _log_beta(a2, b2))
    return min(max(total, 0.0), 1.0)


def _cdf(x: float, a: int, b: int) -> float:
    """The Beta(a, b) CDF: the regularized incomplete beta function, by its
    continued fraction (Lentz), which neither overflows nor grows with a + b."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(x, a, b) / a
    return 1.0 - front * _continued_fraction(1 - x, b, a) / b


def _continued_fraction(x: float, a: int, b: int) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def interval(successes: int, trials: int, mass: float = 0.95) -> tuple[float, float]:
    """The central credible interval of the rate (uniform prior)."""
    a, b = 1 + successes, 1 + trials - successes
    if a + b > 2000:  # normal approximation: the exact sum grows with n and is not needed here
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        z = 1.959963984540054 if mass == 0.95 else _z(mass)
        return max(mean - z * sd, 0.0), min(mean + z * sd, 1.0)
    return _quantile((1 - mass) / 2, a, b), _quantile(1 - (1 - mass) / 2, a, b)


def _z(mass: float) -> float:
    lo, hi = 0.0, 10.0
    target = 1 - (1 - mass) / 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return lo


def _quantile(q: float, a: int, b: int) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if _cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def thompson(counts: Mapping[str, tuple[int, int]], rng: random.Random) -> tuple[str, dict[str, float]]:
    """Pick one arm by Thompson sampling: (arm, the draw of each arm).

    ``counts`` maps each arm to (successes, trials); an arm never tried has
    the uniform prior, so a new variant gets tried. Ties go to the arm listed
    first.
    """
    draws = {arm: rng.betavariate(1 + s, 1 + n - s) for arm, (s, n) in counts.items()}
    best = max(draws, key=lambda arm: draws[arm])
    return best, draws
