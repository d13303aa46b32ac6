"""Initial factors of the deployed and quarantine blocks for one Linear.

Every init returns, for W [out, in], two factor pairs (A [r, in], B [out, r])
with unit rows of A and unit columns of B. The anchors later receive (A, -B),
so the net delta is zero whatever the init: the inits only choose which
directions each block starts from (and so where its first gradients go).

The inits are computed here and copied into the adapters; PEFT's own
PiSSA/CorDA inits rewrite the base weights (the keep zone then differs from
the base and `disable_adapter()` stops being the reference model), and split
components top-r / next-r rather than even/odd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vgrout.names import INITS, PAIR_INITS

NEEDS_PAIRS = PAIR_INITS


@dataclass
class BlockFactors:
    """A: [r, in] unit rows; B: [out, r] unit columns (fp32)."""

    A: Tensor
    B: Tensor


@dataclass
class PairStats:
    """Paired input differences (hack - clean) at one Linear, pooled over completion tokens.

    deltas: [n_pairs, in] float64.
    """

    deltas: Tensor

    def mean_direction(self, where: str) -> Tensor:
        """u_in = unit(mean delta) [in], signed toward the hack."""
        mean = self.deltas.mean(0)
        norm = mean.norm()
        if not torch.isfinite(norm) or norm <= 0:
            raise ValueError(
                f"vgrout.adapters.inits: mean paired input difference at {where} is zero; "
                "hack and clean completions give identical inputs"
            )
        return mean / norm

    def second_moment(self, ridge: float, where: str) -> Tensor:
        """C = E[delta delta^T] + ridge * mean eigenvalue * I  [in, in].

        Uncentred on purpose: centring would remove the mean difference, which
        is the hack direction the init is meant to see.
        """
        n, dim = self.deltas.shape
        c = self.deltas.T @ self.deltas / n
        scale = torch.trace(c) / dim
        if not torch.isfinite(scale) or scale <= 0:
            raise ValueError(
                f"vgrout.adapters.inits: paired input differences at {where} are all zero"
            )
        return c + ridge * scale * torch.eye(dim, dtype=c.dtype)


def _unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _split(a_rows: Tensor, b_cols: Tensor, first: list[int], second: list[int]):
    """Pick rows of A / columns of B into (deployed, quarantine) factors (fp32)."""

    def pick(idx):
        return BlockFactors(a_rows[idx].float().contiguous(), b_cols[:, idx].float().contiguous())

    return pick(first), pick(second)


def _check_rank(w: Tensor, r: int, where: str) -> None:
    if 2 * r > min(w.shape):
        raise ValueError(
            f"vgrout.adapters.inits: {where} has weight {tuple(w.shape)}; "
            f"SVD inits need 2*r = {2 * r} <= {min(w.shape)}"
        )


def gaussian_factors(w: Tensor, r: int, gen: torch.Generator):
    """A ~ N(0, 1/in), B ~ N(0, 1/out): rows/columns of about unit norm."""
    out_f, in_f = w.shape
    blocks = []
    for _ in range(2):
        a = torch.randn(r, in_f, generator=gen, dtype=torch.float64) / in_f**0.5
        b = torch.randn(out_f, r, generator=gen, dtype=torch.float64) / out_f**0.5
        blocks.append(BlockFactors(a.float(), b.float()))
    return blocks[0], blocks[1]


def pissa_factors(w: Tensor, r: int, where: str):
    """Top-2r SVD of W; even components -> deployed, odd -> quarantine."""
    _check_rank(w, r, where)
    u, _, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return _split(vh[: 2 * r], u[:, : 2 * r], list(range(0, 2 * r, 2)), list(range(1, 2 * r, 2)))


def _sym_power(c: Tensor, power: float) -> Tensor:
    evals, evecs = torch.linalg.eigh(c)
    return (evecs * evals.clamp_min(torch.finfo(c.dtype).tiny) ** power) @ evecs.T


def corda_factors(w: Tensor, r: int, stats: PairStats, ridge: float, where: str):
    """SVD of W C^(1/2), C the second moment of paired input differences (+ridge).

    W = sum_i s_i u_i (C^(-1/2) v_i)^T, so component i reads the input along
    C^(-1/2) v_i (A row, normalised) and writes along u_i (B column). Same
    even/odd split as PiSSA.
    """
    _check_rank(w, r, where)
    c = stats.second_moment(ridge, where)
    u, _, vh = torch.linalg.svd(w.double() @ _sym_power(c, 0.5), full_matrices=False)
    a_rows = _unit_rows(vh[: 2 * r] @ _sym_power(c, -0.5))
    return _split(a_rows, u[:, : 2 * r], list(range(0, 2 * r, 2)), list(range(1, 2 * r, 2)))


def _seeded_basis(seed: Tensor, others: Tensor, where: str) -> Tensor:
    """Gram-Schmidt of [seed, others...] (columns) -> orthonormal [dim, k], column 0 = seed."""
    q, rr = torch.linalg.qr(torch.cat([seed[:, None], others], dim=1))
    diag = torch.diagonal(rr)
    if (diag.abs() < 1e-8).any():
        raise ValueError(
            f"vgrout.adapters.inits: seed direction at {where} lies in the span of W's "
            "top singular directions; cannot orthogonalise"
        )
    return q * torch.sign(diag)


def scorda_factors(w: Tensor, r: int, stats: PairStats, where: str, reverse: bool = False):
    """Seed one block with the hack direction, fill the rest from W's SVD.

    Seed: u_in = unit(mean paired input difference), u_out = unit(W u_in).
    Other 2r-1 directions: W's top singular pairs, Gram-Schmidt orthogonalised
    against the seed (and each other). Quarantine = seed + odd components,
    deployed = even components; `reverse` swaps the blocks (the directional
    control: same seed, other block).
    """
    _check_rank(w, r, where)
    w64 = w.double()
    u_in = stats.mean_direction(where)
    w_u = w64 @ u_in
    if w_u.norm() <= 1e-12 * w64.norm():
        raise ValueError(f"vgrout.adapters.inits: W maps the seed direction at {where} to zero")
    u, _, vh = torch.linalg.svd(w64, full_matrices=False)
    q_in = _seeded_basis(u_in, vh[: 2 * r - 1].T, where)  # [in, 2r]
    q_out = _seeded_basis(w_u / w_u.norm(), u[:, : 2 * r - 1], where)  # [out, 2r]
    seeded, other = list(range(0, 2 * r, 2)), list(range(1, 2 * r, 2))
    first, second = (seeded, other) if reverse else (other, seeded)
    return _split(q_in.T, q_out, first, second)


def block_factors(
    kind: str,
    w: Tensor,
    r: int,
    where: str,
    gen: torch.Generator,
    stats: PairStats | None,
    ridge: float,
):
    """(deployed, quarantine) factors of the named init for weight w [out, in]."""
    if kind == "gaussian":
        return gaussian_factors(w, r, gen)
    if kind == "pissa":
        return pissa_factors(w, r, where)
    if stats is None:
        raise ValueError(f"vgrout.adapters.inits: init {kind!r} needs pair statistics at {where}")
    if kind == "corda":
        return corda_factors(w, r, stats, ridge, where)
    if kind in ("scorda", "scorda_rev"):
        return scorda_factors(w, r, stats, where, reverse=kind == "scorda_rev")
    raise ValueError(f"vgrout.adapters.inits: unknown init {kind!r}; expected one of {INITS}")
