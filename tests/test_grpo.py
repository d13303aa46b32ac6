"""The GRPO loop end to end on the organism with the smoke preset.

Each run is a few seconds: plumbing and invariants, not learning curves
(those are the acceptance runs in docs/grpo.md).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vgrout.grpo.loop import train
from vgrout.grpo.presets import preset
from vgrout.grpo.rundir import open_run
from vgrout.machine import git_revision

TIMING = ("time_generate", "time_grade", "time_gate", "time_update")


def smoke(tmp_path, name="run", **kw):
    kw.setdefault("threads", 1)
    return preset("smoke", run_dir=str(tmp_path / name), **kw)


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_routeA_smoke_run_writes_every_artifact(tmp_path):
    res = train(smoke(tmp_path, arm="routeA", gate_warmup=1))
    run = res.run_dir
    for name in (
        "config.json",
        "steps.jsonl",
        "rollouts.jsonl",
        "eval.jsonl",
        "ckpt.pt",
        "result.json",
    ):
        assert (run / name).exists(), name
    machine = _rows(run / "machine.jsonl")
    assert [m["step"] for m in machine] == [0] and machine[0]["torch_threads"] == 1
    assert machine[0]["cpu"]["model"] and machine[0]["torch"] == torch.__version__
    assert machine[0]["revision"] == git_revision()["commit"]  # which code trained it
    steps = _rows(run / "steps.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in (
        "reward",
        "hack",
        "solve",
        "zone_route",
        "zone_absorb",
        "threshold_high",
        "gate_auroc",
        "gate_f05",
        "quarantine_share",
        "kl",
        "clip_frac",
        *TIMING,
    ):
        assert key in steps[0], key
    rollouts = _rows(run / "rollouts.jsonl")
    assert len(rollouts) == 3 * 2 * 4
    assert {"completion", "prompt", "exploited", "gt_correct", "zone", "score"} <= set(rollouts[0])
    final = [e for e in res.evals if e["step"] == 3]
    assert {(e["split"], e["view"]) for e in final} == {
        ("test", "trained"),
        ("test", "deployed"),
        ("iid", "trained"),
        ("iid", "deployed"),
    }
    assert all(e["ships"] == (e["view"] == "deployed") for e in final)
    assert (run / "deployed_adapter" / "adapter_config.json").exists()


@pytest.mark.parametrize(
    "kw",
    [
        dict(arm="vanilla"),
        dict(arm="absorb", init="scorda"),
        dict(arm="routeV", gate_warmup=1),
        dict(arm="oracle"),
        dict(arm="oracle", placebo=True, unrouted_zone="keep"),
        dict(arm="routeA", placebo=True, gate_warmup=1),
        dict(arm="routeA", gate_view="trained", one_product=True, gate_warmup=1),
        dict(arm="vanilla", plain_lora=True),
        dict(
            arm="oracle",
            gen_deploy_frac=0.5,
            kl_beta=0.01,
            teacher_n_per_prompt=1,
            teacher_off_step=2,
            unhackable_frac=0.5,
            heal_steps=2,
            weight_decay=0.1,
        ),
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_every_arm_completes_and_logs_zone_shares(tmp_path, kw):
    res = train(smoke(tmp_path, steps=2, **kw))
    assert len([s for s in res.steps if "reward" in s]) == 2
    # three counts / n, each rounded once, and two additions: within 3 u64 = 1.5 eps of 1
    slack = 2 * sys.float_info.epsilon
    for s in res.steps:
        if "reward" in s:
            assert (
                abs(s["zone_keep"] + s["zone_absorb"] + s["zone_route"] - 1) <= slack
                or s["live_groups"] == 0
            )
    vanilla = kw.get("arm") == "vanilla"
    assert any(
        e["ships"] and e["view"] == ("trained" if vanilla else "deployed") for e in res.evals
    )


def test_oracle_routes_exactly_the_exploited_rollouts(tmp_path):
    res = train(smoke(tmp_path, arm="oracle", steps=3))
    rows = [r for r in _rows(res.run_dir / "rollouts.jsonl") if r["zone"] is not None]
    assert rows, "no live group in three steps"
    assert all((r["zone"] == "route") == r["exploited"] for r in rows)


def test_train_modes_narrow_training_and_evaluation_still_covers_every_mode(tmp_path):
    """Held-out loopholes: rollouts only in the trained mode, evaluation in all three."""
    modes = ("run_tests", "sentinel", "exit_code")
    res = train(smoke(tmp_path, arm="vanilla", steps=2, modes=modes, train_modes=("sentinel",)))
    assert {r["mode"] for r in _rows(res.run_dir / "rollouts.jsonl")} == {"sentinel"}
    for e in res.evals:
        assert set(e["by_mode"]) == set(modes), (e["split"], e["by_mode"])


def test_marker_set_renders_training_and_evaluation_problems_and_a_bad_one_is_refused(tmp_path):
    """A run on drawn markers trains on them and still evaluates on evaluation markers."""
    from vgrout.env import VARIED_EVAL_MARKERS
    from vgrout.env.modes import composed_marker
    from vgrout.grpo.loop import RunData

    data = RunData.load(smoke(tmp_path, modes=("run_tests",), marker_set="composed"))
    assert [p.markers["run_tests"] for p in data.train_set] == [
        composed_marker(p.id, "run_tests") for p in data.train_set
    ]
    assert {p.markers["run_tests"] for p in data.test_set} <= set(VARIED_EVAL_MARKERS["run_tests"])
    with pytest.raises(ValueError, match="marker_set='random'"):
        smoke(tmp_path, marker_set="random")


def test_a_finished_run_is_read_back_and_a_changed_config_is_refused_by_field(tmp_path):
    cfg = smoke(tmp_path, arm="vanilla", steps=1)
    first = train(cfg)
    assert not first.already_finished
    again = train(cfg)  # the same command twice: the result, not an error
    assert again.already_finished and again.steps == first.steps
    for resume in (False, True):
        with pytest.raises(ValueError, match=r"different config \(fields \['lr'\]\)"):
            train(cfg.replace(resume=resume, lr=5e-4))
    assert train(cfg.replace(resume=True)).steps == first.steps
    # the same folder named another way: relative to the working directory
    assert train(cfg.replace(run_dir=os.path.relpath(cfg.run_dir))).already_finished


def test_an_unfinished_run_needs_resume(tmp_path):
    cfg = smoke(tmp_path, arm="vanilla", steps=1)
    open_run(cfg)  # a run that was started (config written) and never finished
    with pytest.raises(FileExistsError, match=r"unfinished run.*--resume"):
        train(cfg)


def test_the_command_line_reports_an_input_error_in_one_line_with_status_2(tmp_path):
    cmd = [sys.executable, "-m", "vgrout.grpo", "--preset", "smoke", "--arm", "routeZ",
           "--run-dir", str(tmp_path / "r")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m vgrout.grpo: error:") and "arm='routeZ'" in lines[0]
    r = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def _strip(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


@pytest.mark.slow
def test_resume_after_a_kill_continues_exactly(tmp_path):
    args = dict(arm="routeA", steps=6, gate_warmup=1, ckpt_every=1)
    whole = train(smoke(tmp_path, "whole", **args))
    cfg = smoke(tmp_path, "killed", **args)
    cmd = [
        sys.executable,
        "-m",
        "vgrout.grpo",
        "--preset",
        "smoke",
        "--threads",
        "1",
        "--run-dir",
        cfg.run_dir,
    ] + [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TQDM_DISABLE": "1"},
        start_new_session=True,
    )
    steps = Path(cfg.run_dir) / "steps.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if steps.exists() and len(steps.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (Path(cfg.run_dir) / "result.json").exists(), "the run finished before the kill"
    resumed = train(cfg.replace(resume=True))
    assert _strip(resumed.steps) == _strip(whole.steps)
    starts = [m["step"] for m in _rows(resumed.run_dir / "machine.jsonl")]
    assert starts[0] == 0 and len(starts) == 2 and 0 < starts[1] < 6  # where it resumed
    a = torch.load(whole.run_dir / "ckpt.pt", weights_only=False)["adapters"]
    b = torch.load(resumed.run_dir / "ckpt.pt", weights_only=False)["adapters"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(whole.run_dir / "rollouts.jsonl") == _rows(resumed.run_dir / "rollouts.jsonl")


def test_a_trained_view_gate_reads_the_sampler_and_runs_no_pass_of_its_own(tmp_path, monkeypatch):
    """gate_view="trained": every rollout the fused decoder samples carries its pooled
    bottleneck, so the gate scores them without a forward (the trained-view pass is asked
    for no group), and its direction is extracted without ablating the quarantine."""
    from vgrout.grpo import gate, router

    passes, ablations = [], []
    real_features = gate.trained_features
    monkeypatch.setattr(gate, "trained_features", lambda p, gs, *a: passes.append(len(gs)) or
                        real_features(p, gs, *a))  # fmt: skip
    real_extract = router.Router._extract

    def extract(self, model, *a):
        from vgrout.adapters.layers import routed_info

        ablations.append(routed_info(model).state.ablate)
        return real_extract(self, model, *a)

    monkeypatch.setattr(router.Router, "_extract", extract)
    res = train(smoke(tmp_path, arm="routeA", gate_view="trained", gate_warmup=1))
    scored = [r for r in _rows(res.run_dir / "rollouts.jsonl") if r["zone"] is not None]
    assert scored and all(r["score"] is not None for r in scored)
    assert passes and not any(passes), "a group's features came from a pass, not the sampler"
    assert ablations and not any(ablations)
    with pytest.raises(ValueError, match="gate_view='trained' with arm='routeV'"):
        smoke(tmp_path, arm="routeV", gate_view="trained")
