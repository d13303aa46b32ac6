"""Data-parallel GRPO over torch.distributed: one process per device, launched by torchrun.

`World` is what the loop asks about the other processes; for one process
(`World()`, the default) every method is the identity, so a run without
torchrun is the one-process loop unchanged. With N ranks (docs/scale.md):

- prompts: every rank draws the step's prompts from the same prompt RNG and
  takes the r-th contiguous slice (`prompts_per_step` must divide by N); the
  hint-free slots are the one-process slots that fall into that slice.
- sampling: each rank's torch RNG is reseeded once, from (seed, rank), after
  the adapters are built (they stay identical: same seed, same init); the
  seeds go to `distributed.json`, every rank's RNG state into each checkpoint.
- gate: the router sees every rank's live groups, gathered in rank order (the
  one-process prompt order), so its buffer, thresholds, zones and RNG evolve
  identically on every rank; a refreshed direction is broadcast from rank 0.
- gradients: each rank backpropagates its own groups with the global Dr.GRPO
  normaliser; the adapter gradients of both blocks are summed over ranks (one
  all-reduce per dtype), so every rank holds the one-process gradient, which
  the loop then clips per block as before.
- logs: each step's record is gathered onto every rank (the teacher tripwire
  sees the whole step everywhere); rank 0 alone writes logs, checkpoints,
  evaluations (run on rank 0 only), the export and result.json.
- errors: every collective here starts with a small all-reduce of a failure
  flag and an operation tag. A rank that raises sends the flag and its message
  (`run_together`), so the others stop with `PeerFailure` naming it instead of
  waiting; ranks that reach different collectives stop with both names.

The run folder must be visible to every rank (one node, or a shared file
system): followers read the checkpoint on resume and the result at the end.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import pickle
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from vgrout.files import atomic_write_text
from vgrout.grpo.rollouts import hint_free_slots
from vgrout.grpo.router import Router
from vgrout.grpo.rundir import RunDir, open_run, set_rng_state
from vgrout.grpo.shared import SharedRouter, SharedRunDir

RECORD = "distributed.json"
"""Written by rank 0 into the run folder: world size, backend, per-rank sampling seeds."""

TIMEOUT_ENV = "VGROUT_DIST_TIMEOUT_S"
"""Seconds a collective may wait (default 3600: rank 0 evaluates while the others wait)."""

# every collective of World, in one list: the tag each rank sends in the flag all-reduce
OPS = ("open_run", "start", "grads", "refresh", "direction", "route", "record", "checkpoint",
       "barrier")  # fmt: skip


class PeerFailure(RuntimeError):
    """Another rank failed; `failures` holds (rank, message) of every rank that did."""

    def __init__(self, failures: list[tuple[int, str]], status: int = 1):
        self.failures, self.status = failures, status
        super().__init__("; ".join(f"rank {r} failed: {m}" for r, m in failures))


def sampling_seed(seed: int, rank: int) -> int:
    """Rank `rank`'s sampling seed for a run of `seed` (a hash: distinct per rank and seed)."""
    digest = hashlib.sha256(f"vgrout-sampling:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where collectives put their tensors: this rank's GPU under NCCL, else the CPU."""

    @property
    def main(self) -> bool:
        """Rank 0: the rank that writes the run folder."""
        return self.rank == 0

    # --- the loop's hooks (identities for one process) ---

    def open_run(self, cfg) -> RunDir:
        """The run folder: rank 0 opens (or refuses) it, every rank gets a handle on it."""
        if self.size == 1:
            return open_run(cfg)
        self.check_config(cfg)
        path = str(open_run(cfg).path) if self.main else None
        path = self.broadcast_object(path, "open_run")
        return SharedRunDir(path, self)

    def check_config(self, cfg) -> None:
        bad = []
        if cfg.prompts_per_step % self.size:
            bad.append(
                f"prompts_per_step={cfg.prompts_per_step} does not divide by the world size "
                f"{self.size} (torchrun --nproc-per-node): each rank takes an equal share"
            )
        if cfg.device.startswith("cuda:"):
            bad.append(
                f"device={cfg.device!r} names one GPU for every rank; leave it empty "
                "(each rank uses cuda:LOCAL_RANK)"
            )
        if bad:
            raise ValueError("GRPOConfig does not fit the world:\n  " + "\n  ".join(bad))

    def router(self, cfg, pairs) -> Router:
        """The run's router: a plain `Router` in one process, a `SharedRouter` on ranks."""
        return Router(cfg, pairs) if self.size == 1 else SharedRouter(cfg, pairs, self)

    def start(self, run: RunDir, ts, cfg) -> None:
        """After state and restore: one model on every rank, per-rank sampling RNGs, the
        record; for one process only the check that the folder was not trained on several
        ranks (resuming it here would continue another run)."""
        record = self._read_record(run)
        if self.size == 1:
            if record and record["world_size"] != 1 and cfg.resume:
                raise ValueError(
                    f"{run.path} was trained on {record['world_size']} ranks ({RECORD}); "
                    f"resume it with torchrun --nproc-per-node {record['world_size']} -m vgrout.train"
                )
            return
        # rank 0's model and init everywhere (as DDP does), whatever a device's init rounding
        self._sync("start")
        with torch.no_grad():
            for t in [*ts.policy.model.parameters(), *ts.init_values]:
                dist.broadcast(t.data, src=0)
        ck = run.load_checkpoint() if cfg.resume else None
        if ck is not None:
            w = ck.get("world")
            if w is None or w["size"] != self.size:
                had = 1 if w is None else w["size"]
                raise ValueError(
                    f"{run.path}/ckpt.pt was written by {had} rank(s); this launch has "
                    f"{self.size}: resume with the world size the run was trained on"
                )
            seeds = list(w["seeds"])
            set_rng_state(w["rng"][self.rank], {})
        else:
            seeds = [sampling_seed(cfg.seed, r) for r in range(self.size)]
            torch.manual_seed(seeds[self.rank])
        cast(SharedRunDir, run).seeds = seeds  # open_run gave every rank one
        if self.main:
            launches = (record or {}).get("launches", []) + [{"from_step": ts.step}]
            body = {"world_size": self.size, "backend": self.backend, "sampling_seeds": seeds,
                    "launches": launches}  # fmt: skip
            atomic_write_text(run.path / RECORD, json.dumps(body, indent=1))

    def shard(self, problems: list, cfg, step: int) -> tuple[list, set[int] | None]:
        """This rank's slice of the step's prompts and its hint-free slots (None: the default)."""
        if self.size == 1:
            return problems, None
        k = len(problems) // self.size
        lo = self.rank * k
        free = hint_free_slots(len(problems), cfg.unhackable_frac, step)
        return problems[lo : lo + k], {i - lo for i in free if lo <= i < lo + k}

    def all_reduce_grads(self, params) -> None:
        """Sum the gradients over ranks; a gradient absent on every rank stays None.

        A parameter with a gradient on some rank only (its groups trained it,
        another rank's did not) gets zeros for the missing terms, as one
        process summing all the groups would.
        """
        if self.size == 1:
            return
        params = list(params)
        self._sync("grads")
        have = torch.tensor([p.grad is not None for p in params], dtype=torch.int64)
        have = have.to(self.device)
        dist.all_reduce(have, op=dist.ReduceOp.MAX)
        buckets: dict = {}
        for p, h in zip(params, have.tolist()):
            if h:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p)
        for ps in buckets.values():
            flat = torch.cat([p.grad.reshape(-1) for p in ps])
            dist.all_reduce(flat)
            for p, g in zip(ps, flat.split([p.numel() for p in ps])):
                p.grad.copy_(g.view_as(p.grad))

    def gather_record(self, rec):
        """The step's record over every rank's groups, in rank order, on every rank.

        Thresholds and gradient measurements must agree across ranks (they are
        computed from gathered features and reduced gradients); a difference
        stops the run. Timings are the slowest rank's.
        """
        if self.size == 1:
            return rec
        scores = [None if s is None else s.cpu() for s in rec.scores]
        parts = self.all_gather_object(
            (
                rec.groups,
                rec.stats,
                rec.times,
                rec.thresholds,
                rec.grad,
                rec.zones,
                scores,
                rec.flags,
            ),  # fmt: skip
            "record",
        )
        for what, i in (("gate thresholds", 3), ("gradient measurements", 4)):
            if any(p[i] != parts[0][i] for p in parts):
                raise RuntimeError(
                    f"step {rec.step}: {what} differ across ranks: {[p[i] for p in parts]}"
                )
        return dataclasses.replace(
            rec,
            groups=[g for p in parts for g in p[0]],
            stats=[s for p in parts for s in p[1]],
            times={k: max(p[2][k] for p in parts) for k in rec.times},
            zones=[z for p in parts for z in p[5]],
            scores=[s for p in parts for s in p[6]],
            flags=None if rec.flags is None else [f for p in parts for f in p[7]],
        )

    def barrier(self) -> None:
        if self.size > 1:
            self._sync("barrier")

    # --- collectives, each behind the failure flag ---

    def all_gather_object(self, obj, op: str) -> list:
        """obj from every rank, in rank order (pickled before the flag, so a bad object fails here)."""
        blob = pickle.dumps(obj)
        self._sync(op)
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, blob)
        return [pickle.loads(b) for b in out]

    def broadcast_object(self, obj, op: str):
        """Rank 0's obj on every rank."""
        blob: list[Any] = [pickle.dumps(obj) if self.main else None]
        self._sync(op)
        dist.broadcast_object_list(blob, src=0)
        return pickle.loads(blob[0])

    def _sync(self, op: str) -> None:
        """The flag all-reduce every collective starts with: [failed, tag, -tag], max."""
        tag = OPS.index(op) + 1
        t = torch.tensor([0, tag, -tag], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        failed, hi, lo = t.tolist()
        if failed:
            failures = [f for f in self._exchange(None) if f is not None]
            status = max((s for _, _, s in failures), default=1)
            raise PeerFailure([(r, m) for r, m, _ in failures], status)
        if hi != -lo:
            raise RuntimeError(
                f"ranks out of step: rank {self.rank} is at collective {op!r}, another at "
                f"{OPS[hi - 1] if hi != tag else OPS[-lo - 1]!r}"
            )

    def _exchange(self, failure: tuple | None) -> list:
        """(rank, message, status) or None from every rank."""
        out = [None] * self.size
        dist.all_gather_object(out, failure)
        return out

    def fail(self, exc: BaseException) -> list[tuple[int, str]]:
        """Tell the other ranks this one failed; returns (rank, message) of every failed rank.

        Called by `run_together`. Best effort: if the collectives themselves
        are broken, torchrun's agent still tears the other ranks down.
        """
        if self.size == 1 or isinstance(exc, PeerFailure):
            return []
        from vgrout.cli import INPUT_ERRORS, one_line

        status = 2 if isinstance(exc, INPUT_ERRORS) else 1
        mine = (self.rank, f"{type(exc).__name__}: {one_line(exc)}", status)
        try:
            dist.all_reduce(torch.tensor([1, 0, 0], device=self.device), op=dist.ReduceOp.MAX)
            return [(r, m) for r, m, _ in (f for f in self._exchange(mine) if f is not None)]
        except Exception:  # noqa: BLE001 - the group is broken: torchrun ends the others
            traceback.print_exc()
            return [(self.rank, mine[1])]

    def settle(self) -> None:
        """A plain barrier after a failure was shared (best effort: the group may be broken)."""
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - nothing left to coordinate; torchrun ends the rest
            pass

    def close(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @staticmethod
    def _read_record(run: RunDir) -> dict | None:
        p = Path(run.path) / RECORD
        return json.loads(p.read_text()) if p.exists() else None


def init_world(device: str = "") -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); one process without it.

    NCCL when the run uses CUDA (device "" on a GPU machine, or "cuda"), each
    rank on cuda:LOCAL_RANK; gloo otherwise.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPU(s): "
                "one rank per GPU (torchrun --nproc-per-node at most the GPU count)"
            )
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "3600")))
    dist.init_process_group(backend, timeout=timeout)
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    return World(rank, size, local, backend, dev)


def run_together(world: World, fn, *args, report=None):
    """fn(*args) on every rank; an exception on one rank stops every rank.

    The lowest-numbered rank that failed re-raises its own exception; every
    other rank raises `PeerFailure` naming the failed ranks and their
    messages. `report(exception)` is called before any rank goes on: on that
    rank with its own exception, and on rank 0 (if it did not fail) with the
    PeerFailure; the ranks then wait for each other, so a launcher that stops
    the others at the first exit (torchrun) does not cut the message short.
    """
    if world.size == 1:
        return fn(*args)
    try:
        return fn(*args)
    except PeerFailure as e:
        own, failures, status = None, e.failures, e.status
    except Exception as e:  # noqa: BLE001 - shared with the other ranks, then re-raised
        from vgrout.cli import INPUT_ERRORS

        own, failures = e, world.fail(e)
        status = 2 if isinstance(e, INPUT_ERRORS) else 1
    reporter = failures[0][0] if failures else world.rank
    peer = PeerFailure(failures, status)
    if report is not None and (reporter == world.rank or world.main):
        report(own if reporter == world.rank else peer)
    world.settle()
    if own is not None and reporter == world.rank:
        raise own
    raise peer from own
