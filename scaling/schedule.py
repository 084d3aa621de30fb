"""Learning-rate schedules, as a factor of the peak LR at each optimizer step. Pure Python.

cosine: linear warm-up, then a cosine that reaches `min_ratio` exactly at the last step
(Chinchilla: a schedule longer than the run leaves the loss biased upwards).

wsd (warmup-stable-decay): linear warm-up, the peak LR held, then a cooldown over the last
`decay_steps` steps down to `min_ratio`. Up to its cooldown a WSD run is the same for every
budget, which is what lets one constant-LR trunk serve all of a size's budgets: each budget
is a branch that starts from the trunk at its own cooldown (Hägele et al. 2024). The
cooldown's shape is `1-sqrt` (factor 1 - sqrt(progress), which they find better) or `linear`.
"""

from __future__ import annotations

import math


def warmup(step: int, warmup_steps: int) -> float:
    """The linear warm-up's factor at `step` (counted from 0), 1 once it is over."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    if step < warmup_steps:
        return warmup(step, warmup_steps)
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cooldown_steps(total_steps: int, decay_fraction: float) -> int:
    """How many of a WSD run's last steps decay: `decay_fraction` of them, at least one."""
    return min(total_steps, max(1, round(decay_fraction * total_steps)))


def wsd(
    step: int,
    warmup_steps: int,
    total_steps: int,
    decay_steps: int,
    min_ratio: float,
    shape: str = "1-sqrt",
) -> float:
    """Every one of the `decay_steps` last steps trains below the peak, and the last one at
    `min_ratio`. A cooldown that starts inside the warm-up takes the lower of the two, so the
    factor never jumps."""
    start = total_steps - decay_steps
    if step < start:
        return warmup(step, warmup_steps)
    progress = min(1.0, (step - start + 1) / decay_steps)
    remaining = 1 - math.sqrt(progress) if shape == "1-sqrt" else 1 - progress
    return min(warmup(step, warmup_steps), min_ratio + (1 - min_ratio) * remaining)
