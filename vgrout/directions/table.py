"""Does a direction classify hacks? The site x source table, with uncertainty.

A labelled pool (`pools.py`) is captured once at every site; each direction
source gives a direction per site; every direction is scored on the same
held-out split of the pool. The oracle is fit on the other (train) split, so
it is an honest upper bound, and a Haar-random band says what "no signal"
looks like at the same site.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from vgrout.directions.capture import Capture, capture_texts
from vgrout.directions.extract import extract_directions, haar_direction, oracle_direction, score
from vgrout.directions.metrics import (
    auroc,
    band_verdict,
    bootstrap_ci,
    f_beta_at_quantile,
    f_beta_ceiling,
    random_band,
)
from vgrout.directions.pools import LabelledPool
from vgrout.names import SITES


@dataclass(frozen=True)
class TableSpec:
    """How `routing_table` splits, captures and scores (the CLI's and notebook 02's settings)."""

    q: float = 0.1
    """F0.5 is computed with exactly the top q of the held-out rows routed."""
    n_boot: int = 1000
    """Cluster-bootstrap resamples (of held-out problems) per confidence interval."""
    seed: int = 0
    """Seeds the split, the bootstrap, the band and the Haar source."""
    test_frac: float = 0.5
    """Share of problems held out for scoring (the oracle is fit on the rest)."""
    n_band: int = 200
    """Haar-random directions in the no-signal band."""
    hack_share: float | None = None
    """Compute F0.5 (its band and ceiling) as if hacks were this share of rollouts
    (None: the held-out split's own share; see `f_beta_at_quantile`)."""
    block: str = "deployed"
    """The LoRA block whose bottleneck the capture reads."""
    batch_size: int = 16
    """Rows per capture minibatch."""
    max_completion_tokens: int | None = None
    """Completions are cut to this many tokens before capture (None: whole)."""

    def capture_kw(self) -> dict:
        return dict(
            block=self.block,
            batch_size=self.batch_size,
            max_completion_tokens=self.max_completion_tokens,
        )


@dataclass(frozen=True)
class PairSource:
    """Directions from hack/clean pairs: the mean paired difference, or ("t") its t-statistic."""

    pairs: tuple
    method: str = "mean"


Source = str | PairSource | Mapping[str, torch.Tensor]
"""A direction source: "oracle", "haar", pairs (`PairSource`), or ready {site: direction}."""


def split_by_group(
    groups: Sequence[str], labels: np.ndarray, test_frac: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Train mask [n] bool: whole problems go to one side, stratified by majority label.

    Splitting by problem keeps the oracle from learning a problem's surface
    and scoring the same problem's other rollouts.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    uniq = sorted(set(groups))
    major = {g: labels[[i for i, x in enumerate(groups) if x == g]].mean() >= 0.5 for g in uniq}
    test_groups = set()
    for cls in (True, False):
        gs = [g for g in uniq if major[g] == cls]
        gs = [gs[i] for i in rng.permutation(len(gs))]
        test_groups |= set(gs[: int(round(test_frac * len(gs)))])
    train = np.array([g not in test_groups for g in groups])
    for name, m in (("train", train), ("test", ~train)):
        if len(set(labels[m].tolist())) < 2:
            raise ValueError(
                f"split_by_group: the {name} split lacks a class "
                f"({int(labels[m].sum())} hack of {int(m.sum())}); need more problems"
            )
    return train


def _table_row(sc, y, groups, f05, ceiling, bands, n_boot, seed) -> dict:
    """One (site, source) row: metrics, cluster-bootstrap CIs, band and verdicts."""
    a_lo, a_hi = bootstrap_ci(auroc, sc, y, groups=groups, n=n_boot, seed=seed)
    f_lo, f_hi = bootstrap_ci(f05, sc, y, groups=groups, n=n_boot, seed=seed)
    band_f, band_a = bands
    value_f, value_a = f05(sc, y), auroc(sc, y)
    return dict(
        auroc=value_a,
        auroc_lo=a_lo,
        auroc_hi=a_hi,
        f05=value_f,
        f05_lo=f_lo,
        f05_hi=f_hi,
        f05_ceiling=ceiling,
        band_median=band_f["median"],
        band_p95=band_f["p95"],
        f05_verdict=band_verdict(value_f, band_f["p95"], ceiling, y.size),
        band_auroc_median=band_a["median"],
        band_auroc_p95=band_a["p95"],
        auroc_verdict=band_verdict(value_a, band_a["p95"], 1.0, y.size),
    )


def _directions_for(
    source: Source, feats: Capture, train: np.ndarray, pool: LabelledPool, sites, model,
    tokenizer, spec: TableSpec,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One source -> a direction per site (see `Source`)."""
    if isinstance(source, PairSource):
        return extract_directions(
            model, tokenizer, list(source.pairs), sites, method=source.method, **spec.capture_kw()
        )
    if isinstance(source, Mapping):
        missing = [s for s in sites if s not in source]
        if missing:
            raise ValueError(f"routing_table: the given directions lack sites {missing}")
        return {s: torch.as_tensor(source[s]) for s in sites}
    if source == "oracle":
        hidden = np.where(train, pool.labels, -1)  # test labels never leave this function
        return {s: oracle_direction(feats[s], hidden, train) for s in sites}
    if source == "haar":
        return {s: haar_direction(feats[s].shape[1:], spec.seed, feats.widths[s]) for s in sites}
    raise ValueError(
        f"routing_table: unknown source {source!r} (use 'oracle', 'haar', a PairSource "
        "or a dict of directions)"
    )


def routing_table(
    model,
    tokenizer,
    pool: LabelledPool,
    direction_sources: Mapping[str, Source],
    sites: Sequence[str] = SITES,
    spec: TableSpec | None = None,
    **settings,
):
    """DataFrame, one row per (site, source), all scored on the held-out split.

    spec: the settings (`TableSpec`); or give its fields as keywords (`q=0.05`).
    Columns: auroc (+ _lo/_hi 95% CI), f05 = F0.5 with exactly the top q
    routed (+ CI), f05_ceiling = the best F0.5 any score reaches on these
    labels, band_median / band_p95 = F0.5 of n_band Haar-random directions
    (band_auroc_* likewise for AUROC), f05_verdict / auroc_verdict = "beats
    band", "does not beat band" or "cannot discriminate" (the ceiling is at
    the band's p95: no direction could beat it), hack_share = the share F0.5
    is evaluated at, n_hack / n_clean and n_problems on the held-out split,
    n_train. CIs resample held-out problems (`bootstrap_ci` with the pool's
    groups).
    """
    import pandas as pd

    spec = dataclasses.replace(spec or TableSpec(), **settings)
    feats = capture_texts(model, tokenizer, pool.prompts, pool.completions, sites,
                          **spec.capture_kw())  # fmt: skip
    train = split_by_group(pool.groups, pool.labels, spec.test_frac, spec.seed)
    y_test, g_test = pool.labels[~train], np.asarray(pool.groups)[~train]
    f05 = functools.partial(f_beta_at_quantile, q=spec.q, beta=0.5, hack_share=spec.hack_share)
    ceiling = f_beta_ceiling(y_test, q=spec.q, beta=0.5, hack_share=spec.hack_share)
    share = float(y_test.mean()) if spec.hack_share is None else float(spec.hack_share)
    held = torch.as_tensor(~train)
    bands = {}
    for s in sites:
        x, w = feats[s][held].numpy(), feats.widths[s]
        bands[s] = (random_band(x, y_test, spec.n_band, spec.seed, f05, w),
                    random_band(x, y_test, spec.n_band, spec.seed, auroc, w))  # fmt: skip
    counts = dict(hack_share=share, n_hack=int(y_test.sum()), n_clean=int((1 - y_test).sum()),
                  n_problems=len(set(g_test)), n_train=int(train.sum()))  # fmt: skip
    rows = []
    for name, source in direction_sources.items():
        dirs = _directions_for(source, feats, train, pool, sites, model, tokenizer, spec)
        for s in sites:
            sc = score(feats[s][held], dirs[s]).numpy()
            row = _table_row(sc, y_test, g_test, f05, ceiling, bands[s], spec.n_boot, spec.seed)
            rows.append(dict(site=s, source=name, **row, **counts))
    return pd.DataFrame(rows)
