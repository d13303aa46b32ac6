"""The language model side: loading a policy, the CPU organism, tokens, sampling,
the shared-prompt forward pass and token log-probs. Knows no adapters."""
