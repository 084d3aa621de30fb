"""Scaling-law forms, as values that carry their parameters and know what they predict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2).

    N is parameters and D training tokens; at compute C = 6·N·D the loss-optimal split is
    N_opt = G·(C/6)^a and D_opt = (C/6)^b / G, with a = beta/(alpha+beta), b = alpha/(alpha+beta)
    and G = (alpha·A / (beta·B))^(1/(alpha+beta)) (the paper's eq. 4)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def a(self) -> float:
        """The exponent of N_opt(C): the share of extra compute that should go to parameters."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        # numpy powers: a bootstrap resample can fit a negative exponent, and a negative
        # base must give nan (a law with no optimum), not a complex number.
        ratio = np.float64(self.alpha * self.A) / (self.beta * self.B)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(ratio ** (1 / (self.alpha + self.beta)))

    def n_opt(self, C):
        return self.G * (np.asarray(C, float) / 6) ** self.a

    def d_opt(self, C):
        return (np.asarray(C, float) / 6) ** self.b / self.G

    def loss_opt(self, C):
        """The loss of the compute-optimal model at budget C."""
        return self.loss(self.n_opt(C), self.d_opt(C))

    def at_tokens(self, D: float) -> SaturatingPowerLaw:
        """Loss against parameters at D training tokens: (E + B/D^beta) + A/N^alpha."""
        # A numpy power: a bootstrap law with beta in the thousands must give 0 (overflow to
        # inf, divided), where Python's float power raises OverflowError.
        floor = self.E + self.B / np.float64(D) ** self.beta
        return SaturatingPowerLaw(float(floor), self.A, self.alpha)


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · x^exponent, with a 95% interval on the exponent (None from 2 points)."""

    coefficient: float
    exponent: float
    exponent_ci95: tuple[float, float] | None
    n_points: int
    aic: float  # on log y, Gaussian errors

    def __call__(self, x):
        return self.coefficient * np.asarray(x, float) ** self.exponent

    def to_dict(self) -> dict:
        return {
            "coefficient": self.coefficient,
            "exponent": self.exponent,
            "exponent_ci95": list(self.exponent_ci95) if self.exponent_ci95 else None,
            "n_points": self.n_points,
        }


@dataclass(frozen=True)
class Exponential:
    """y = coefficient · e^(rate · x)."""

    coefficient: float
    rate: float
    aic: float


@dataclass(frozen=True)
class SaturatingPowerLaw:
    """L(N) = E + A / N^alpha: loss against one variable at the other held fixed (Kaplan's
    L(N) at fixed tokens); also a slice of a Chinchilla law at fixed D."""

    E: float
    A: float
    alpha: float

    def __call__(self, x):
        return self.E + self.A / np.asarray(x, float) ** self.alpha
