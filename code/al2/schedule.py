"""The progressive AL2 weight w_e (paper Sec. 3): the authors' get_map_weights."""
from __future__ import annotations

# The authors' defaults for get_map_weights.
MAP_START, MAP_THRESHOLD, MAP_FAC1, MAP_FAC2 = 0.01, 5.0, 1.1, 1.01


def get_map_weights(epochs: int, start: float = MAP_START, threshold: float = MAP_THRESHOLD,
                    fac1: float = MAP_FAC1, fac2: float = MAP_FAC2) -> list[float]:
    """The authors' progressive AL2 weight w_e for e = 0 .. epochs-1 (zero-based: w_e weighs
    L_r in the (e+1)-th training epoch).

    w_0 = start; each epoch multiplies by fac1 while the weight is below `threshold`, by fac2
    after. With the defaults w first reaches the threshold at epoch 66 and w_699 is about 2.9e3.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    weights = [float(start)] if epochs else []
    for _ in range(1, epochs):
        w = weights[-1]
        weights.append(w * (fac1 if w < threshold else fac2))
    return weights
