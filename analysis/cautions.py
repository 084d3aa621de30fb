"""When a 95% interval is too wide for what the report does with the quantity: the one rule
behind the report's cautions and the verdict's "a loose beta".

- a (N_opt ∝ C^a) is read to choose an allocation. Kaplan et al.'s a = 0.73 and Chinchilla's
  0.5 are 0.23 apart, so an interval 0.2 wide or wider cannot tell them apart.
- A power law's exponent (approach 3's alpha and beta, alpha at fixed tokens) is read to
  extrapolate the law. An exponent twice another makes its power law fall as the square of
  the other's (x^-2k = (x^-k)^2) over the same stretch beyond the grid, so an interval whose
  ends are more than 2x apart does not pin the extrapolation; one that includes 0 has not
  shown the loss falling at all, and one below 0 shows it rising.
- A scale (E, A, B) is read for its order of magnitude: ends more than 100x apart leave even
  that open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ALLOCATION_WIDTH = 0.2  # Kaplan's a = 0.73 against Chinchilla's 0.5
EXPONENT_RATIO = 2.0  # one end's power law falls as the square of the other's
SCALE_RATIO = 100.0  # not even the order of magnitude


def _allocation_too_wide(low: float, high: float) -> str | None:
    if high - low < ALLOCATION_WIDTH:
        return None
    return f"{high - low:.2g} wide, {ALLOCATION_WIDTH:g} or more"


def _exponent_too_wide(low: float, high: float) -> str | None:
    if low <= 0 <= high:
        return "it includes 0"
    if high < 0:
        return "it lies below 0: the loss rises, not falls"
    ratio = max(abs(low), abs(high)) / min(abs(low), abs(high))
    if ratio <= EXPONENT_RATIO:
        return None
    return f"its ends are {ratio:.3g}x apart, more than {EXPONENT_RATIO:g}x"


def _scale_too_wide(low: float, high: float) -> str | None:
    if high <= SCALE_RATIO * max(low, 1e-12):
        return None
    return f"its ends are more than {SCALE_RATIO:g}x apart"


@dataclass(frozen=True)
class Use:
    """One use the report makes of a quantity: when an interval is too wide for it (a few
    words saying how, or None), and what then follows."""

    too_wide: Callable[[float, float], str | None]
    consequence: str

    def caution(self, what: str, interval: tuple[float, float] | None) -> str | None:
        """The warning for `what` where its interval is too wide for this use; None where
        it is not, or there is no interval."""
        why = self.too_wide(*interval) if interval else None
        if why is None or interval is None:
            return None
        low, high = interval
        where = f"the 95% interval of {what} runs from {low:.3g} to {high:.3g}"
        return f"{where}: {why}, {self.consequence}"


ALLOCATION = Use(_allocation_too_wide, "so it cannot tell Kaplan's a = 0.73 from Chinchilla's 0.5")
EXPONENT = Use(
    _exponent_too_wide,
    "so it does not pin the law's extrapolation (an exponent twice another makes its power "
    "law fall as the square of the other's; 0, not fall at all)",
)
SCALE = Use(_scale_too_wide, "so the data barely constrain it")
