"""The GPU check behind benchmarks/gpu_check.sh (see there); prints one line per case."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from vgrout.grpo.loop import train
from vgrout.grpo.presets import preset
from vgrout.lm.load import load_policy

QWEN3_4B = dict(
    hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
    rope_theta=1_000_000.0, max_position_embeddings=40960, rms_norm_eps=1e-6,
)  # fmt: skip
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, vocab_size=151936, tie_word_embeddings=True,
)  # fmt: skip


def one_case(name: str, device: str, tmp: str, **overrides) -> None:
    """Train a short run; print its median step (after the first) and the peak memory."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cfg = preset(
        "organism", device=device, eval_every=0, final_eval_samples=1, eval_max_problems=2,
        ckpt_every=10_000, run_dir=f"{tmp}/{name}", **overrides,
    )  # fmt: skip
    t0 = time.perf_counter()
    res = train(cfg)
    wall = time.perf_counter() - t0
    steps = [r for r in res.steps if "reward" in r]
    times = [sum(r[k] for k in r if k.startswith("time_")) for r in steps[1:] or steps]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    live = sum(r["live_groups"] for r in steps)
    print(f"{name:28s} live groups {live:3d}  step {statistics.median(times):7.3f} s   peak {peak:6.2f} GiB   "
          f"run {wall:6.1f} s ({len(steps)} steps)", flush=True)  # fmt: skip


def random_model(shape: dict, device: str, folder: str) -> str:
    """A randomly initialised Qwen3 of `shape` in bf16 with the organism's tokenizer, saved."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    _, tok = load_policy("organism", device="cpu")
    config = Qwen3Config(**shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)  # fmt: skip
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="a small shape instead of Qwen3-4B's")
    ap.add_argument("--steps", type=int, default=6, help="organism steps per dtype")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    elif not args.tiny:
        raise SystemExit("gpu_check: no CUDA device; use --tiny for a CPU dry run")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("bfloat16", "float32"):
            one_case(f"organism {dtype}", device, tmp, dtype=dtype, steps=args.steps)
        shape = TINY if args.tiny else QWEN3_4B
        folder = random_model(shape, device, f"{tmp}/model")
        label = "tiny-shape" if args.tiny else "qwen3-4b-shape"
        # a random model earns no reward, so teacher demos make its groups live (trained)
        one_case(f"{label} routeA bfloat16", device, tmp, model=folder, arm="routeA",
                 dtype="bfloat16", steps=2, gate_warmup=1, teacher_n_per_prompt=2,
                 teacher_off_step=2)  # fmt: skip


if __name__ == "__main__":
    main()
