"""The language model side: loading a policy, the CPU organism, tokens, sampling,
the shared-prompt and packed forward passes and token log-probs.

Knows no routed adapters. One module reads a plain PEFT LoRA Linear's merged
weight (`projections.py`, which says why it lives here); the Qwen3 layer every
fast path runs is written once, in `qwen3.py`."""
