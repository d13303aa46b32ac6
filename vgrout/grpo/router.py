"""Per-arm routing decisions for one step's live groups.

The router owns the gate's state (direction, score buffer, its RNG) and
answers one question per step: which zone does each rollout train in? The
features it scores come from the no-grad deployed-view pass that the loop
already runs for behaviour log-probs (routeA) or from a gradient capture
(routeV), both in the deployed view, so the gate sees what will be deployed.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from typing import Sequence, cast

import torch
from torch import Tensor

from vgrout.directions.extract import haar_direction, score
from vgrout.grpo.zones import ScoreBuffer, oracle_zones, zones_by_count, zones_from_scores

SITE = {"routeA": "bottleneck", "routeV": "grad"}


class Router:
    def __init__(self, cfg, pairs: Sequence | None):
        self.cfg = cfg
        self.pairs = pairs
        self.site = SITE.get(cfg.arm)
        self.buffer = ScoreBuffer(cfg.gate_q, cfg.gate_half_life, cfg.gate_warmup)
        self.direction: Tensor | None = None
        self.refreshed_at = 0
        self._stream = None  # the pairs as a packed stream, built at the first refresh
        self.rng = random.Random(cfg.seed * 1009 + 17)
        if self.site and not cfg.placebo and not pairs:
            raise ValueError(
                f"arm={cfg.arm!r} needs pairs to extract its direction "
                f"(config field pairs={cfg.pairs!r} selected none)"
            )

    @property
    def scores_features(self) -> bool:
        return self.site is not None

    def maybe_refresh(self, model, tokenizer, step: int, example: Tensor | None) -> bool:
        """(Re)build the direction at the first gated step and every `refresh_every` steps.

        `example` is one group's features (None when no group is live this step:
        then nothing is scored, and nothing is refreshed).
        """
        if self.site is None or example is None:
            return False
        if self.cfg.placebo:
            if self.direction is None:
                self.direction = haar_direction(tuple(example.shape[1:]), seed=self.cfg.seed + 99)
                return True
            return False
        due = self.direction is None or (
            self.cfg.refresh_every > 0 and step - self.refreshed_at >= self.cfg.refresh_every
        )
        if not due:
            return False
        from vgrout.adapters import ablate_quarantine

        # the direction is extracted in the view the gate reads
        view = ablate_quarantine(model) if self.cfg.gate_view == "deployed" else nullcontext()
        with view:
            self.direction = self._extract(model, tokenizer)
        self.refreshed_at = step
        if not torch.isfinite(self.direction).all():
            raise FloatingPointError(
                f"gate: refreshed {self.site} direction is non-finite at step {step}"
            )
        return True

    def _extract(self, model, tokenizer) -> Tensor:
        """The direction from the pairs in the current view: packed under forward="packed"
        (the pairs tokenised and packed once per run), else `extract_directions`."""
        from vgrout.directions.extract import extract_directions, pair_stream, stream_direction
        from vgrout.lm import packed

        site, pairs = cast(str, self.site), cast(Sequence, self.pairs)  # set on gated arms

        if self.cfg.forward == "packed" and self.site == "bottleneck" and packed.supports(model):
            if self._stream is None:
                self._stream = pair_stream(tokenizer, pairs, model.device)
            return stream_direction(model, self._stream)
        return extract_directions(model, tokenizer, pairs, sites=(site,))[site]

    def assign(self, feats: Sequence[Tensor | None], hacked: Sequence[Sequence[bool]]):
        """Zones per group, scores per group (or None), and the thresholds used (None on
        arms without a score gate; with gate_count, (None, the lowest routed score)).

        feats: per group [G, modules, width] gate features (score arms only).
        hacked: per group true labels (read by the oracle arm only).
        """
        cfg = self.cfg
        if cfg.arm in ("vanilla", "absorb"):
            return [["absorb"] * len(h) for h in hacked], [None] * len(hacked), None
        if cfg.arm == "oracle":
            return (
                [
                    oracle_zones(
                        h, cfg.oracle_reveal_frac, cfg.unrouted_zone, cfg.placebo, self.rng
                    )
                    for h in hacked
                ],
                [None] * len(hacked),
                None,
            )
        direction = cast(Tensor, self.direction)  # refreshed before the first gated step
        gated = cast(Sequence[Tensor], feats)  # every live group has features on these arms
        scores = [score(f.float().cpu(), direction) for f in gated]
        if cfg.gate_count:  # the same count every step, whatever the direction
            # of the step's rollouts, not of its live ones: two runs then flag the same
            # number even where their live groups differ (unless fewer rows are live)
            k = round(cfg.gate_q * cfg.prompts_per_step * cfg.group_size)
            zones, lowest = zones_by_count(scores, k, cfg.unrouted_zone)
            return zones, scores, (None, lowest)
        for f in gated:
            self.buffer.add(f)
        thr = self.buffer.thresholds(direction)
        zones = [zones_from_scores(s, thr, cfg.unrouted_zone, cfg.keep_low_tail) for s in scores]
        return zones, scores, thr

    def state_dict(self) -> dict:
        return {
            "buffer": self.buffer.state_dict(),
            "direction": self.direction,
            "refreshed_at": self.refreshed_at,
            "rng": self.rng.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.direction = state["direction"]
        self.refreshed_at = state["refreshed_at"]
        self.rng.setstate(state["rng"])
