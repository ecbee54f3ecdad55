"""The accuracy goal: how much loss against the baseline a config may have and still meet it."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CRITERIA = ("relative", "absolute")


@dataclass(frozen=True)
class AccuracyCriterion:
    """`tolerable_loss` of the baseline, `relative` (a fraction of |baseline|) or `absolute`.

    A config meets the goal iff accuracy >= baseline - tol (higher is better) or
    accuracy <= baseline + tol (lower is better). The comparison is not strict, so an
    exact tie with the baseline meets a zero tolerance. NaN never meets.
    """

    tolerable_loss: float = 0.01
    criterion: str = "relative"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        loss = self.tolerable_loss
        if isinstance(loss, bool) or not isinstance(loss, numbers.Real) or math.isnan(loss):
            raise ValueError(f"tolerable_loss must be a number, got {loss!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}; got {self.criterion!r}")
        if loss < 0:
            raise ValueError(f"tolerable_loss must be >= 0, got {loss}")
        if self.criterion == "relative" and loss >= 1:
            raise ValueError(f"tolerable_loss must be < 1 when the criterion is relative (a fraction of the baseline), got {loss}")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"higher_is_better must be True or False, got {self.higher_is_better!r}")
        object.__setattr__(self, "tolerable_loss", float(loss))

    def tolerance(self, baseline: float) -> float:
        """The allowed loss for this baseline."""
        if self.criterion == "relative":
            return abs(baseline) * self.tolerable_loss
        return self.tolerable_loss

    def goal(self, baseline: float) -> float:
        """The accuracy a config must reach (at least, or at most when lower is better) for this baseline."""
        tolerance = self.tolerance(baseline)
        return baseline - tolerance if self.higher_is_better else baseline + tolerance

    def loss(self, accuracy: float, baseline: float) -> float:
        """How much worse than the baseline `accuracy` is (negative when it is better)."""
        return baseline - accuracy if self.higher_is_better else accuracy - baseline

    def accuracy_after(self, loss: float, baseline: float) -> float:
        """The accuracy that is `loss` worse than the baseline (the inverse of `loss`)."""
        return baseline - loss if self.higher_is_better else baseline + loss

    def margin(self, accuracy: float, baseline: float) -> float:
        """How far `accuracy` is on the good side of the goal: >= 0 iff it meets the goal."""
        return self.tolerance(baseline) - self.loss(accuracy, baseline)

    def meets(self, accuracy: float | None, baseline: float) -> bool:
        if accuracy is None or math.isnan(accuracy):
            return False
        goal = self.goal(baseline)
        return accuracy >= goal if self.higher_is_better else accuracy <= goal

    def meets_array(self, accuracy: np.ndarray, baseline: float) -> np.ndarray:
        """`meets` of each of `accuracy` (NaN for a failed evaluation, which never meets), as a bool array."""
        import numpy as np

        goal = self.goal(baseline)
        with np.errstate(invalid="ignore"):
            return accuracy >= goal if self.higher_is_better else accuracy <= goal

    def rank_key(self, accuracy: float | None) -> tuple[bool, float]:
        """Sort key putting the best accuracy first and errored (None or NaN) results last."""
        if accuracy is None or math.isnan(accuracy):
            return (True, 0.0)
        return (False, -accuracy if self.higher_is_better else accuracy)
