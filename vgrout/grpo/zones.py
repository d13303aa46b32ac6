"""The router: per-rollout zones from a score gate or from true labels.

Zones map to the adapter masks (m = quarantine on, d = deployed detached):
keep (0, 0) trains the deployed block only, absorb (1, 0) trains both,
route (1, 1) trains the quarantine only.

The score gate thresholds at quantiles of a *run-long* buffer rather than of
the current batch: a batch of 32 has too few high-tail rollouts for a stable
quantile, and a per-batch quantile routes the same share every step even when
nothing in the batch hacks. The buffer is re-scored against the current
direction at every step, so a refreshed direction moves the thresholds too.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch
from torch import Tensor

from vgrout.directions.extract import score
from vgrout.names import ZONES

# (m, d) of each zone, in ZONES order: keep, absorb, route
ZONE_MASKS = dict(zip(ZONES, ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))))


def zone_masks(zones: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Zones -> (m, d) float masks of shape [batch]."""
    try:
        pairs = [ZONE_MASKS[z] for z in zones]
    except KeyError as e:
        raise ValueError(f"unknown zone {e.args[0]!r}: expected one of {ZONES}") from None
    m, d = zip(*pairs) if pairs else ((), ())
    return torch.tensor(m), torch.tensor(d)


def weighted_quantile(values: Tensor, weights: Tensor, q: float) -> float:
    """Smallest value whose cumulative normalised weight reaches q."""
    order = torch.argsort(values)
    cum = torch.cumsum(weights[order], 0)
    cum = cum / cum[-1]
    idx = int(torch.searchsorted(cum, torch.tensor(q, dtype=cum.dtype)).clamp(max=len(cum) - 1))
    return float(values[order][idx])


class ScoreBuffer:
    """Every gate feature seen in the run, with the rollout index it arrived at."""

    def __init__(self, q: float, half_life: float = 0.0, warmup: int = 32):
        self.q, self.half_life, self.warmup = q, half_life, warmup
        self.feats: Tensor | None = None  # [N, modules, r]
        self.born: list[int] = []
        self.seen = 0

    def add(self, feats: Tensor) -> None:
        feats = feats.detach().float().cpu()
        self.feats = feats if self.feats is None else torch.cat([self.feats, feats])
        self.born.extend(range(self.seen, self.seen + len(feats)))
        self.seen += len(feats)

    def thresholds(self, direction: Tensor) -> tuple[float, float] | None:
        """(low, high) at the q and 1-q weighted quantiles, or None while warming up."""
        if self.feats is None or len(self.feats) < self.warmup:
            return None
        s = score(self.feats, direction.cpu())
        if not torch.isfinite(s).all():
            raise FloatingPointError(
                "gate: non-finite score in the buffer "
                "(direction or captured features contain NaN/inf)"
            )
        w = torch.ones_like(s)
        if self.half_life > 0:
            age = self.seen - 1 - torch.tensor(self.born, dtype=torch.float32)
            w = 0.5 ** (age / self.half_life)
        return weighted_quantile(s, w, self.q), weighted_quantile(s, w, 1 - self.q)

    def state_dict(self) -> dict:
        return {"feats": self.feats, "born": list(self.born), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.feats, self.born, self.seen = state["feats"], list(state["born"]), state["seen"]


def zones_from_scores(
    scores: Tensor, thresholds: tuple[float, float] | None, unrouted_zone: str, keep_low_tail: bool
) -> list[str]:
    """Score >= high: route; <= low: keep if keep_low_tail; else the unrouted zone."""
    if not torch.isfinite(scores).all():
        raise FloatingPointError(f"gate: non-finite rollout score {scores.tolist()}")
    if thresholds is None:
        return [unrouted_zone] * len(scores)
    low, high = thresholds
    zones = []
    for s in scores.tolist():
        if s >= high:
            zones.append("route")
        elif keep_low_tail and s <= low:
            zones.append("keep")
        else:
            zones.append(unrouted_zone)
    return zones


def zones_by_count(
    scores: Sequence[Tensor], k: int, unrouted_zone: str
) -> tuple[list[list[str]], float | None]:
    """Route the k top-scoring rollouts of the step over every group (all, if fewer).

    scores: per group [G]. Ties go to the earlier rollout (a stable order), so the
    count is exact whatever the scores. Returns (zones per group, the lowest routed
    score, None when nothing is routed).
    """
    flat = torch.cat([s.float().cpu() for s in scores]) if scores else torch.zeros(0)
    if not torch.isfinite(flat).all():
        raise FloatingPointError(f"gate: non-finite rollout score {flat.tolist()}")
    k = min(k, len(flat))
    order = sorted(range(len(flat)), key=lambda i: (-float(flat[i]), i))
    routed = set(order[:k])
    zones, start = [], 0
    for s in scores:
        zones.append(["route" if start + i in routed else unrouted_zone for i in range(len(s))])
        start += len(s)
    return zones, (float(flat[order[k - 1]]) if k else None)


def oracle_zones(
    hacked: Sequence[bool],
    reveal_frac: float,
    unrouted_zone: str,
    placebo: bool,
    rng: random.Random,
) -> list[str]:
    """Route the revealed hacks; the placebo routes as many rows, chosen at random."""
    routed = [h and rng.random() < reveal_frac for h in hacked]
    if placebo:
        chosen = set(rng.sample(range(len(hacked)), sum(routed)))
        routed = [i in chosen for i in range(len(hacked))]
    return ["route" if r else unrouted_zone for r in routed]
