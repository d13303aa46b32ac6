"""Data-parallel GRPO on 2 CPU processes (gloo): the 2-rank step is the 1-process step.

The equivalence runs put both runs on the same rollouts: each prompt's group
is sampled under a seed of its own (the per-rank sampling RNG is not used) and
graded by a stand-in grader, so that 2 ranks with half the prompts each and
1 process with all of them see the same groups; the routeA gate, both blocks'
gradients and the optimizer step then differ only where the 2-rank run sums
in another order. The smoke runs go through `torchrun -m vgrout.train`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import rounding_tol

from vgrout.grpo.presets import preset

ROOT = Path(__file__).resolve().parents[1]
ADAM_EPS = 1e-8  # torch.optim.AdamW's default, which the loop uses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, out: Path, *args, nprocs: int = 2) -> None:
    """fn(rank, port, out, *args) on `nprocs` gloo ranks; raises if a rank fails."""
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(nprocs, free_port(), out, *args), nprocs=nprocs, join=True)


def join_world(rank: int, size: int, port: int):
    from vgrout.grpo.distributed import TIMEOUT_ENV, init_world

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(size), TQDM_DISABLE="1",
                      **{TIMEOUT_ENV: "60"})  # fmt: skip
    torch.set_num_threads(1)
    return init_world("cpu")


# --- errors ---------------------------------------------------------------


def _error_rank(rank, size, port, out):
    from vgrout.grpo.distributed import PeerFailure, run_together

    world = join_world(rank, size, port)
    outcome = {}

    def rank1_fails():
        if rank == 1:
            raise ValueError("rank 1 cannot read its shard")
        world.barrier()  # rank 0 waits in a collective

    def ranks_at_different_collectives():
        world.barrier() if rank == 0 else world.all_gather_object(rank, "record")

    for name, fn in (("fails", rank1_fails), ("out_of_step", ranks_at_different_collectives)):
        reported = []
        try:
            run_together(world, fn, report=lambda e, seen=reported: seen.append(type(e).__name__))
            outcome[name] = None
        except PeerFailure as e:
            outcome[name] = ("PeerFailure", e.failures, e.status)
        except (ValueError, RuntimeError) as e:
            outcome[name] = (type(e).__name__, str(e))
        outcome[f"{name} reported"] = reported
    world.close()
    (out / f"rank{rank}.json").write_text(json.dumps(outcome))


@pytest.mark.timeout(120)
def test_an_error_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    spawn(_error_rank, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # rank 0 was waiting in a barrier: it stops, naming rank 1 and its message
    assert r0["fails"] == ["PeerFailure", [[1, "ValueError: rank 1 cannot read its shard"]], 2]
    assert r1["fails"] == ["ValueError", "rank 1 cannot read its shard"]
    # shown twice before either rank exits: by the failed rank, and named by rank 0
    assert r0["fails reported"] == ["PeerFailure"] and r1["fails reported"] == ["ValueError"]
    # ranks that reach different collectives stop (both report it) instead of mixing them
    assert r0["out_of_step"][0] == "RuntimeError" and "out of step" in r0["out_of_step"][1]
    assert r1["out_of_step"][0] == "PeerFailure" and "out of step" in r1["out_of_step"][1][0][1]


# --- one step on the same rollouts: 2 ranks vs 1 process ----------------------


def equivalence_config(run_dir: Path):
    """The per-group forward: its gradient after each group sizes the tolerance of the sum
    (`summed_grad_tol`); the packed update equals it per group (tests/test_packed.py)."""
    return preset("smoke", run_dir=str(run_dir), threads=1, workers=1, steps=1,
                  prompts_per_step=4, arm="routeA", keep_low_tail=True,
                  gen_deploy_frac=0.5, kl_beta=0.01, forward="hf")  # fmt: skip


def _stand_in_grade(items):
    """Rewards alternate within a group (every group is live); labels from the text."""
    return [
        SimpleNamespace(
            reward=float(i % 2),
            format_ok=True,
            gt_correct=i % 4 == 1,
            exploited=zlib.crc32(text.encode()) % 2 == 1,
        )  # fmt: skip
        for i, (text, _, _) in enumerate(items)
    ]


def instrument(record: dict) -> list[tuple[object, str, object]]:
    """(owner, attribute, replacement) patches that fix the rollouts and record the step."""
    from vgrout.grpo import loop, rollouts

    real_collect, real_gate = rollouts.collect_groups, loop.gate
    real_backward, real_step = loop.group_backward, loop.optimizer_step

    def grads(params):
        return [None if p.grad is None else p.grad.detach().clone() for p in params]

    def collect(model, data, problems, cfg, step, samplers, free=None):
        record.setdefault("rng_at_first_collect", torch.get_rng_state())
        groups, times = [], {"generate": 0.0, "grade": 0.0}
        stand_in = dataclasses.replace(data, grade=_stand_in_grade)
        for p in problems:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(zlib.crc32(f"{p.id}:{step}".encode()))
                g, t = real_collect(model, stand_in, [p], cfg, step, samplers)
            groups += g
            times = {k: times[k] + t[k] for k in times}
        return groups, times

    def gate(policy, router, tok, live, step, *args):
        gated, thresholds = real_gate(policy, router, tok, live, step, *args)
        record["thresholds"] = thresholds
        record["zones"] = [(str(g.group.problem.id), g.zones, g.scores) for g in gated]
        return gated, thresholds

    def group_backward(policy, group, *args):
        out = real_backward(policy, group, *args)
        record.setdefault("after_group", []).append(grads(policy.all_params()))
        return out

    def optimizer_step(ts, cfg):
        params = ts.policy.all_params()
        record["grad"] = grads(params)  # summed over ranks, before clipping
        record["init"] = [v.detach().clone() for v in ts.init_values]
        out = real_step(ts, cfg)
        record["clipped"] = grads(params)
        record["params"] = [p.detach().clone() for p in params]
        record["measured"], record["lr"] = out
        record["block"] = [b for b, ps in ts.policy.params.items() for _ in ps]
        return out

    return [
        (loop, "collect_groups", collect),
        (loop, "gate", gate),
        (loop, "group_backward", group_backward),
        (loop, "optimizer_step", optimizer_step),
        (
            loop.RunData,
            "evaluate",
            lambda self, policy, cfg, step, final=False: [],
        ),  # not under test
    ]


def _equivalence_rank(rank, size, port, out):
    from vgrout.grpo.loop import train

    world = join_world(rank, size, port)
    record = {}
    for owner, name, value in instrument(record):
        setattr(owner, name, value)
    train(equivalence_config(out / "two_ranks"), world)
    world.close()
    torch.save(record, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def same_rollouts(tmp_path_factory):
    """(1-process record, [rank 0 record, rank 1 record], 1-process dir, 2-rank dir)."""
    from vgrout.grpo.loop import train

    out = tmp_path_factory.mktemp("same_rollouts")
    one = {}
    with pytest.MonkeyPatch.context() as mp:
        for owner, name, value in instrument(one):
            mp.setattr(owner, name, value)
        train(equivalence_config(out / "one_process"))
    spawn(_equivalence_rank, out)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    return one, ranks, out / "one_process", out / "two_ranks"


def summed_grad_tol(one: dict) -> list[float]:
    """Per parameter: how far two summation orders of the step's group gradients may differ.

    The 1-process run sums the groups one after another, the 2-rank run each
    rank's half and then the two halves: `rounding_tol` of a sum over the
    groups, at the size of its terms (the per-group gradients, which may cancel).
    """
    snaps = one["after_group"]
    tols = []
    for i in range(len(one["grad"])):
        steps = [s[i] for s in snaps if s[i] is not None]
        terms = [steps[0]] + [b - a for a, b in zip(steps, steps[1:])]
        size = torch.stack([t.abs() for t in terms]).sum(0)
        tols.append(rounding_tol(size, torch.float32, width=len(terms)))
    return tols


def block_norm_tol(one: dict, tols: list[float], block: str) -> float:
    """How far a block's gradient norm may move: its gradients' tolerances, then the norm's
    own rounding (a sum of squares over the block's elements)."""
    idx = [i for i, b in enumerate(one["block"]) if b == block and one["grad"][i] is not None]
    n = sum(one["grad"][i].numel() for i in idx)
    moved = math.sqrt(sum(one["grad"][i].numel() * tols[i] ** 2 for i in idx))
    return moved + rounding_tol(one["measured"][f"grad_norm_{block}"], torch.float32, width=n)


def test_two_ranks_sum_both_blocks_gradients_as_one_process_on_the_same_rollouts(same_rollouts):
    one, (r0, r1), _, _ = same_rollouts
    assert len(one["after_group"]) == 4 and len(r0["after_group"]) == len(r1["after_group"]) == 2
    for a, b in zip(r0["grad"], r1["grad"]):  # the reduced gradient is one tensor everywhere
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    tols = summed_grad_tol(one)
    for g1, g2, tol in zip(one["grad"], r0["grad"], tols):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            torch.testing.assert_close(g2, g1, atol=tol, rtol=0)
    for block in ("deployed", "quarantine"):  # the norms the per-block clip used
        key = f"grad_norm_{block}"
        assert one["measured"][key] > 0, f"the {block} block got no gradient"
        assert abs(r0["measured"][key] - one["measured"][key]) <= block_norm_tol(one, tols, block)


def adam_first_step_tol(grad, dgrad, lr: float) -> torch.Tensor:
    """Per element: how far AdamW's first update may move when its gradient moves by dgrad.

    At the first step AdamW moves a parameter by -lr * g / (|g| + eps)
    (bias-corrected moments m = g, v = g^2), whose slope in g is
    eps / (|g| + eps)^2 (largest nearest zero; the move never exceeds 2 lr),
    plus its own rounding at the size of lr.
    """
    near = (grad.abs() - dgrad).clamp_min(0)
    moved = (lr * dgrad * ADAM_EPS / (near + ADAM_EPS) ** 2).clamp(max=2 * lr)
    return moved + rounding_tol(lr, torch.float32)


def test_two_ranks_take_the_one_process_optimizer_step(same_rollouts):
    one, (r0, r1), _, _ = same_rollouts
    cfg = equivalence_config(Path("unused"))
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))
    assert all(torch.equal(a, b) for a, b in zip(one["init"], r0["init"]))
    assert r0["lr"] == one["lr"]
    tols, eps32 = summed_grad_tol(one), torch.finfo(torch.float32).eps
    for block in ("deployed", "quarantine"):
        norm, dnorm = one["measured"][f"grad_norm_{block}"], block_norm_tol(one, tols, block)
        coef = min(1.0, cfg.grad_clip / (norm + 1e-6))  # clip_grad_norm_'s scale
        dcoef = coef * dnorm / (norm - dnorm)
        moved = False
        for i in (i for i, b in enumerate(one["block"]) if b == block):
            g, clipped, p1, p2 = (
                one["grad"][i],
                one["clipped"][i],
                one["params"][i],
                r0["params"][i],
            )
            if g is None:
                assert torch.equal(p1, p2)
                continue
            dclipped = coef * tols[i] + g.abs() * dcoef + eps32 * clipped.abs()
            bound = adam_first_step_tol(clipped, dclipped, one["lr"]) + eps32 * p1.abs()
            assert ((p2 - p1).abs() <= bound).all(), float(((p2 - p1).abs() - bound).max())
            moved |= not torch.equal(p1, one["init"][i])
        assert moved, f"the {block} block did not move"


def test_the_gate_thresholds_and_zones_agree_across_ranks_and_with_one_process(same_rollouts):
    one, (r0, r1), _, _ = same_rollouts
    assert one["thresholds"] is not None, "the gate was still warming up"
    assert r0["thresholds"] == r1["thresholds"] == one["thresholds"]
    zones = r0["zones"] + r1["zones"]  # each rank's groups, in rank order
    assert [(p, z) for p, z, _ in zones] == [(p, z) for p, z, _ in one["zones"]]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(zones, one["zones"]))
    assert {z for _, zs, _ in zones for z in zs} >= {"route", "absorb"}


def test_ranks_sample_from_their_own_recorded_seeds(same_rollouts):
    _, (r0, r1), _, two = same_rollouts
    seeds = json.loads((two / "distributed.json").read_text())["sampling_seeds"]
    assert len(set(seeds)) == 2
    for seed, rec in zip(seeds, (r0, r1)):
        torch.manual_seed(seed)
        assert torch.equal(rec["rng_at_first_collect"], torch.get_rng_state())
    assert torch.load(two / "ckpt.pt", weights_only=False)["world"]["seeds"] == seeds


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _strip(rows, drop=("grad_norm_", "quarantine_share", "delta_share", "time_")):
    return [{k: v for k, v in r.items() if not k.startswith(drop)} for r in rows]


def test_rank_0_alone_logs_every_ranks_rollouts_as_one_process_would(same_rollouts):
    _, _, one_dir, two_dir = same_rollouts
    assert _rows(two_dir / "rollouts.jsonl") == _rows(one_dir / "rollouts.jsonl")
    # gradient norms and shares: compared with their tolerances above
    assert _strip(_rows(two_dir / "steps.jsonl")) == _strip(_rows(one_dir / "steps.jsonl"))
    assert (two_dir / "deployed_adapter" / "adapter_config.json").exists()


# --- the command line under torchrun -----------------------------------------

SMOKE = ["--preset", "smoke", "--arm", "routeA", "--threads", "1", "--workers", "1",
         "--gate-warmup", "1", "--eval-max-problems", "1", "--max-new-tokens", "32"]  # fmt: skip


def torchrun(run_dir: Path, *flags: str, wait: bool = True):
    """`torchrun --nproc-per-node 2 -m vgrout.train` on the smoke preset (its own session)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "vgrout.train", *SMOKE, "--run-dir", str(run_dir), *flags]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "VGROUT_DIST_TIMEOUT_S": "120",
    }
    log = open(run_dir.parent / f"{run_dir.name}.log", "a")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    log.close()
    if wait:
        proc.wait(timeout=300)
        out = (run_dir.parent / f"{run_dir.name}.log").read_text()
        assert proc.returncode == 0, out[-3000:]
        assert "already finished" not in out
    return proc


def _stat(pid) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def kill_tree(proc) -> None:
    """SIGKILL a torchrun agent and every process under it, as a lost node would die.

    torchrun starts each rank in a session of its own, so killing the agent's
    process group would leave the ranks running (and finishing the run).
    """
    children = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and (st := _stat(p.name)):
            children.setdefault(st[1], []).append(int(p.name))
    tree, todo = [], [proc.pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 10
    while (
        left := [p for p in tree[1:] if (_stat(p) or ("Z",))[0] != "Z"]
    ) and time.time() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of the killed run still running: {left}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_torchrun_routeA_smoke_run_completes_and_resumes_after_a_kill(tmp_path):
    whole = tmp_path / "whole"
    torchrun(whole)
    steps = _rows(whole / "steps.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert len(_rows(whole / "rollouts.jsonl")) == 3 * 2 * 4  # both ranks' rollouts, once
    assert {(e["split"], e["view"]) for e in _rows(whole / "eval.jsonl")} == {
        (s, v) for s in ("test", "iid") for v in ("trained", "deployed")
    }
    assert (whole / "result.json").exists() and (whole / "deployed_adapter").exists()

    killed = tmp_path / "killed"
    proc = torchrun(killed, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (killed / "ckpt.pt").exists() and len(_rows(killed / "steps.jsonl")) >= 1:
            break
        time.sleep(0.05)
    kill_tree(proc)

    assert not (killed / "result.json").exists(), "the run finished before the kill"
    stopped_at = torch.load(killed / "ckpt.pt", weights_only=False)["state"]["step"]
    torchrun(killed, "--resume")
    assert _strip(_rows(killed / "steps.jsonl"), ("time_",)) == _strip(steps, ("time_",))
    assert _rows(killed / "rollouts.jsonl") == _rows(whole / "rollouts.jsonl")
    a, b = (torch.load(d / "ckpt.pt", weights_only=False)["adapters"] for d in (whole, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    launches = json.loads((killed / "distributed.json").read_text())["launches"]
    assert launches == [{"from_step": 0}, {"from_step": stopped_at}]
