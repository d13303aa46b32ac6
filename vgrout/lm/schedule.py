"""The learning-rate schedule shared by the organism's warm start and GRPO.

Both trainers warm up linearly and then decay by a cosine to a floor. One
function computes it, so a change to the shape (or a float-order slip) cannot
reach one trainer and not the other.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float) -> float:
    """The lr multiplier at `step`: (step + 1) / warmup_steps, then cosine to `floor`.

    A decayed end point is a stable checkpoint (at a constant lr neighbouring
    checkpoints differ a lot). Steps past `total_steps` stay at `floor`;
    `warmup_steps` = 0 starts at the peak.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
