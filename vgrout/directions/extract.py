"""Hack directions: one unit vector per module (or layer) row, and the score.

Every direction here has the shape of a capture site's features without the
batch axis, ``[rows, width]``, with each row a unit vector (or zero where the
data give no signal, e.g. zero-padded coordinates). A rollout's score is the
sum over rows of dot products, which is what the routing gate thresholds.

Sources:
- `mean_diff_direction`: unit mean paired difference hack - clean (the
  label-free recipe: pairs written or generated without rollout labels).
- `t_stat_direction`: the same, with each coordinate divided by the standard
  error of its paired difference (down-weights noisy coordinates).
- `haar_direction`: seeded random unit rows, the placebo.
- `oracle_direction`: unit difference of class means on *labelled rollouts of
  the train split only*, the upper bound a label-free direction is compared to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vgrout.directions.capture import capture_texts
from vgrout.files import atomic_write
from vgrout.names import SITES
from vgrout.paths import repo_path

_EPS = 1e-12


def unit_rows(v: Tensor) -> Tensor:
    """[rows, width] -> each row divided by its norm; all-zero rows stay zero."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def _check_paired(h_hack: Tensor, h_clean: Tensor) -> None:
    if h_hack.shape != h_clean.shape or h_hack.dim() != 3:
        raise ValueError(
            f"directions: paired features must both be [n, rows, width]; got "
            f"{tuple(h_hack.shape)} and {tuple(h_clean.shape)}"
        )
    if h_hack.shape[0] == 0:
        raise ValueError("directions: no pairs")


def mean_diff_direction(h_hack: Tensor, h_clean: Tensor) -> Tensor:
    """[n, rows, width] x2 -> [rows, width]: unit(mean_i (hack_i - clean_i)) per row."""
    _check_paired(h_hack, h_clean)
    return unit_rows((h_hack.double() - h_clean.double()).mean(0)).float()


def t_stat_direction(h_hack: Tensor, h_clean: Tensor) -> Tensor:
    """[n, rows, width] x2 -> [rows, width]: unit paired t-statistic per row.

    Coordinates whose difference never varies (std 0, e.g. zero padding) get 0
    rather than an infinite weight.
    """
    _check_paired(h_hack, h_clean)
    if h_hack.shape[0] < 2:
        raise ValueError("t_stat_direction: needs at least 2 pairs for a standard error")
    d = h_hack.double() - h_clean.double()  # [n, rows, width]
    se = d.std(0, unbiased=True) / d.shape[0] ** 0.5
    t = torch.where(se > _EPS, d.mean(0) / se.clamp_min(_EPS), torch.zeros_like(se))
    return unit_rows(t).float()


def haar_direction(shape: Sequence[int], seed: int, widths: Sequence[int] | None = None) -> Tensor:
    """[rows, width] of independent uniformly random unit rows (Gaussian, normalised).

    widths: true width of each row (capture's zero padding); coordinates past
    a row's width are set to zero before normalising, so a random row has the
    same effective dimension as the features it scores.

    A numpy twin, `metrics.haar_rows`, stays because metrics imports no torch.
    """
    rows, width = shape
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(rows, width, generator=g, dtype=torch.float64)
    if widths is not None:
        if len(widths) != rows:
            raise ValueError(f"haar_direction: {len(widths)} widths for {rows} rows")
        v = v * (torch.arange(width)[None, :] < torch.tensor(widths)[:, None])
    return unit_rows(v).float()


def oracle_direction(
    feats: Tensor,
    labels: Sequence[int] | Tensor | np.ndarray,
    split_mask: Sequence[bool] | Tensor | np.ndarray,
) -> Tensor:
    """Unit difference of class means (hack=1 minus clean=0), train rows only.

    feats: [n, rows, width]; labels: [n] in {0, 1} (values on test rows are
    never read and may be anything, e.g. -1); split_mask: [n] bool, True =
    train. Test rows are dropped before the labels are looked at, so a
    direction scored on the test split cannot have been fit to its labels.
    """
    split = torch.as_tensor(split_mask, dtype=torch.bool)
    if split.dim() != 1 or split.shape[0] != feats.shape[0] or len(labels) != feats.shape[0]:
        raise ValueError(
            f"oracle_direction: feats {tuple(feats.shape)}, {len(labels)} labels and "
            f"split_mask {tuple(split.shape)} must agree on the row count"
        )
    train_idx = torch.nonzero(split).flatten().tolist()
    y = torch.tensor([int(labels[i]) for i in train_idx])  # only train labels are read
    x = feats[split].double()  # [n_train, rows, width]
    if set(y.tolist()) - {0, 1}:
        raise ValueError("oracle_direction: train labels must be 0 (clean) or 1 (hack)")
    if int(y.sum()) == 0 or int(y.sum()) == len(y):
        raise ValueError(
            f"oracle_direction: the train split needs both classes; got "
            f"{int(y.sum())} hack and {len(y) - int(y.sum())} clean"
        )
    diff = x[y == 1].mean(0) - x[y == 0].mean(0)
    return unit_rows(diff).float()


def score(feats: Tensor, direction: Tensor) -> Tensor:
    """[batch, rows, width] x [rows, width] -> [batch]: sum over rows of dot products."""
    if feats.shape[1:] != direction.shape:
        raise ValueError(
            f"score: features {tuple(feats.shape)} do not match direction {tuple(direction.shape)}"
        )
    return torch.einsum("brw,rw->b", feats.double(), direction.double()).float()


def extract_directions(
    model: nn.Module,
    tokenizer,
    pairs: Sequence,
    sites: Sequence[str] = SITES,
    method: str = "mean",
    block: str = "deployed",
    batch_size: int = 16,
    max_completion_tokens: int | None = None,
) -> dict[str, Tensor]:
    """Pairs -> pooled capture of both sides on the pair's prompt -> direction per site.

    pairs: objects with ``.prompt`` (user message text), ``.hack`` and
    ``.clean`` (completion texts). method: "mean" or "t".
    """
    if method not in ("mean", "t"):
        raise ValueError(f"extract_directions: method must be 'mean' or 't', got {method!r}")
    if not pairs:
        raise ValueError("extract_directions: no pairs")
    prompts = [p.prompt for p in pairs]
    kw: dict[str, Any] = dict(
        sites=sites, block=block, batch_size=batch_size, max_completion_tokens=max_completion_tokens
    )
    hack = capture_texts(model, tokenizer, prompts, [p.hack for p in pairs], **kw)
    clean = capture_texts(model, tokenizer, prompts, [p.clean for p in pairs], **kw)
    fit = mean_diff_direction if method == "mean" else t_stat_direction
    return {s: fit(hack[s], clean[s]) for s in sites}


def save_directions(path: str | Path, directions: Mapping[str, Mapping], meta: Mapping) -> Path:
    """Write {source: {site: tensor}} with the meta they were extracted under (atomic)."""
    import torch

    blob = {
        "meta": dict(meta),
        "directions": {
            s: {k: v.detach().cpu() for k, v in d.items()} for s, d in directions.items()
        },
    }
    return atomic_write(repo_path(path), lambda tmp: torch.save(blob, tmp))


def load_directions(path: str | Path, **expect) -> dict:
    """{source: {site: tensor}} from `save_directions`, checking the meta.

    expect: meta fields that must match (model, rank, init, seed...). Why:
    bottleneck, adapter_out and grad directions are only meaningful on the
    adapters they were captured from; scoring them on another init measures
    nothing, silently.
    """
    import torch

    p = repo_path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: no saved directions; run 01_direction_extraction.ipynb "
            "first with the same run_dir"
        )
    blob = torch.load(p, weights_only=False)
    bad = {k: (blob["meta"].get(k), v) for k, v in expect.items() if blob["meta"].get(k) != v}
    if bad:
        raise ValueError(
            f"{p}: directions were extracted under different settings (saved, wanted): {bad}"
        )
    return blob["directions"]


def pair_stream(tokenizer, pairs: Sequence, device=None):
    """Both sides of every pair as one packed stream (`vgrout.lm.packed`), tokenised once.

    Rows 0..n-1 are the hack sides, n..2n-1 the clean sides, tokenised as
    `capture_texts` tokenises them; a pair's two sides share its prompt's unit.
    A run's pairs never change, so the router packs them once and re-reads
    the stream at every refresh.
    """
    from vgrout.directions.capture import render_prompt
    from vgrout.lm.packed import pack
    from vgrout.lm.tokens import encode

    if not pairs:
        raise ValueError("pair_stream: no pairs")
    prompts = [render_prompt(tokenizer, p.prompt) for p in pairs] * 2
    b = encode(tokenizer, prompts, [p.hack for p in pairs] + [p.clean for p in pairs])
    p_ids, c_ids = [], []
    for ids, attn, comp in zip(b.input_ids, b.attention_mask, b.completion_mask):
        p_ids.append(ids[(attn == 1) & (comp == 0)].tolist())
        c_ids.append(ids[comp == 1].tolist())
    return pack(p_ids, c_ids, device=device)


def stream_direction(model: nn.Module, stream, block: str = "deployed") -> Tensor:
    """`extract_directions`' bottleneck direction (method "mean") from a `pair_stream`.

    One packed forward over every pair instead of padded minibatches; equal to
    `extract_directions` to float rounding (tests/test_packed.py).
    """
    from vgrout.directions.capture import capture_in_forward
    from vgrout.lm import packed

    with torch.no_grad():
        pool = lambda acts: packed.pool_rows(acts, stream)  # noqa: E731
        with capture_in_forward(model, None, block, pool=pool) as cap:
            packed.forward(model, stream, logits=False)
    feats = cap.features  # [2n, modules, r]
    n = feats.shape[0] // 2
    return mean_diff_direction(feats[:n].cpu(), feats[n:].cpu())
