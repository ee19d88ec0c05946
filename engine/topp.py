"""Top-p selection of adapters (the DLP-LoRA paper's eq. 3-4).

Sort the probabilities descending, keep the shortest prefix whose sum reaches p (at least one),
cap it at `max_adapters`, and renormalise the kept probabilities into mixing weights.
"""
import numpy as np

# Probabilities come from a float32 softmax: a prefix that should sum to exactly p can land a few ulps short.
_EPS = 1e-6


def top_p_select(probs, p, max_adapters=None):
    """probs: [N] non-negative scores (normalised here). Returns {index: weight}, weights summing to 1.

    Ties are broken by the lower index first, so the result is deterministic.
    """
    q = np.asarray(probs, dtype=np.float64).reshape(-1)  # [N]
    if q.size == 0:
        raise ValueError("top_p_select needs at least one probability")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if max_adapters is not None and max_adapters < 1:
        raise ValueError(f"max_adapters must be >= 1 or None, got {max_adapters}")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ValueError("top_p_select needs finite, non-negative probabilities")
    total = q.sum()
    q = q / total if total > 0 else np.full_like(q, 1.0 / q.size)
    order = np.argsort(-q, kind="stable")  # descending; stable sort keeps the lower index first on ties
    cum = np.cumsum(q[order])
    k = int(np.searchsorted(cum, p - _EPS, side="left")) + 1  # shortest prefix with sum >= p
    k = min(k, q.size, int(np.count_nonzero(q)) or 1)  # never keep zero-probability adapters
    if max_adapters is not None:
        k = min(k, max_adapters)
    kept = order[:k]
    w = q[kept] / q[kept].sum()
    return {int(i): float(x) for i, x in zip(kept, w)}
