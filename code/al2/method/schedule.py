"""The progressive AL2 weight w_e (paper Sec. 3): the authors' get_map_weights, and the same rule as
a scheduler object (AL2Schedule) for a training loop of your own."""
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
        weights.append(next_map_weight(weights[-1], threshold, fac1, fac2))
    return weights


def next_map_weight(w: float, threshold: float, fac1: float, fac2: float) -> float:
    """The authors' rule, one epoch on: w * fac1 while w is below the threshold, w * fac2
    from it on."""
    return w * (fac1 if w < threshold else fac2)


class AL2Schedule:
    """The progressive weight w_e as a scheduler, in the style of torch.optim.lr_scheduler:
    `value` is the weight of the epoch being trained, `step()` is called once at the end of each
    epoch, `state_dict()` / `load_state_dict()` carry it through a checkpoint. Its values are
    get_map_weights(...)'s: after e calls of step(), value == get_map_weights(e + 1, ...)[e].
    """

    def __init__(self, start: float = MAP_START, threshold: float = MAP_THRESHOLD,
                 fac1: float = MAP_FAC1, fac2: float = MAP_FAC2):
        if start < 0 or fac1 <= 0 or fac2 <= 0:
            raise ValueError(f"start must be >= 0 and the factors > 0, got start {start}, "
                             f"fac1 {fac1}, fac2 {fac2}")
        self.start, self.threshold, self.fac1, self.fac2 = start, threshold, fac1, fac2
        self.epoch, self.value = 0, float(start)

    def step(self) -> float:
        """End of an epoch: the next epoch's weight, the authors' rule (fac1 below the
        threshold, fac2 from it on)."""
        self.value = next_map_weight(self.value, self.threshold, self.fac1, self.fac2)
        self.epoch += 1
        return self.value

    def state_dict(self) -> dict:
        return {"start": self.start, "threshold": self.threshold, "fac1": self.fac1,
                "fac2": self.fac2, "epoch": self.epoch, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        for key in ("start", "threshold", "fac1", "fac2", "epoch", "value"):
            setattr(self, key, state[key])

    def __repr__(self) -> str:
        return (f"AL2Schedule(epoch={self.epoch}, value={self.value:.6g}, start={self.start}, "
                f"threshold={self.threshold}, fac1={self.fac1}, fac2={self.fac2})")
