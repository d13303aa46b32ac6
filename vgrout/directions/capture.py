"""Pooled completion-token activations at four sites, through one API.

Direction extraction, the live routing gate and the diagnostics all ask the
same question ("what does the model compute on the completion tokens of these
rows?"). If each answered it with its own hooks, a direction could be fit on
one pooling and scored on another without anyone noticing, so there is one
capture here and everyone calls it.

Sites (every feature tensor is ``[batch, rows, width]``, mean-pooled over the
completion tokens of each row, float32):

- ``resid``: output of each decoder layer (the residual stream after the
  layer; the last one is before the final norm). rows = layers, named like
  the module tree (``layers.3``), width = d_model.
- ``bottleneck``: ``A·x`` of the deployed LoRA block at every adapted module.
  rows = adapted modules, width = r.
- ``adapter_out``: ``scaling · B·A·x`` of the deployed block, i.e. exactly
  what the block adds to the module output. Modules differ in d_out (q/k/v,
  MLP up/down), so rows are zero-padded to the widest module; ``Capture.widths``
  records each row's true width. Zero padding keeps dot-product scores exact
  (padded coordinates are zero in every feature) and `haar_direction` takes
  the widths so random rows put no mass in the padding.
- ``grad``: gradient of each row's completion NLL (mean over its completion
  tokens) with respect to the deployed bottleneck output ``A·x``, pooled like
  the others (features are float32, or float64 for a float64 model). A row's loss depends only on its own activations, so the
  gradient of the summed loss at a row's slice of the bottleneck tensor is
  that row's own gradient: one batched backward gives exact per-rollout
  gradients. The gradient is ``scaling · Bᵀ ∂L/∂out``, hence identically zero
  when B = 0 (standard LoRA init); capture refuses that case rather than
  return zeros that look like a measurement.

Row names are the adapters' `short_name` of each hooked module, so a resid row
``layers.3`` and a LoRA row ``layers.3.self_attn.q_proj`` share one scheme,
and the LoRA rows are found by the adapters' own `lora_layers`.

The capture does not change which adapters are active: to capture the
deployed view (quarantine ablated), wrap the call in the adapters' ablation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from vgrout.adapters.layers import lora_layers, short_name
from vgrout.lm.logprobs import completion_nll
from vgrout.lm.tokens import Batch, chat_prompt, encode, pool_completion
from vgrout.names import SITES


class Capture(dict):
    """``dict[site, Tensor [batch, rows, width]]`` plus row names and widths.

    modules: site -> list of row names (module short names: ``layers.3`` for a
             decoder layer, ``layers.3.self_attn.q_proj`` for an adapted Linear)
    widths:  site -> list of true widths per row (padding beyond is zero)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modules: dict[str, list[str]] = {}
        self.widths: dict[str, list[int]] = {}


def _find_lora(model: nn.Module, block: str = "deployed") -> dict[str, nn.Module]:
    """Map module short name -> the LoRA layer holding ``block`` (in model order).

    The layers and their names are the adapters' (`lora_layers`, `short_name`),
    so a capture row and an init or checkpoint entry of the same module carry
    the same name. Returns the PEFT ``LoraLayer`` (not its lora_A/lora_B child)
    so callers can hook either and read the layer's ``scaling``. Raises when
    the block is absent or a layer is merged: merged adapters bypass forward
    hooks, so a capture would silently see nothing.
    """
    found = {}
    for name, layer in lora_layers(model):
        if block not in layer.lora_A:
            continue
        if layer.merged:
            raise RuntimeError(f"capture: LoRA layer {name} is merged; hooks would not fire")
        found[short_name(name)] = layer
    if not found:
        raise ValueError(f"capture: no LoRA layer holds an adapter named {block!r}")
    return found


def _decoder_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Short name -> decoder layer, in order ('layers.0', 'layers.1', ...).

    The decoder layers are the only ModuleList named '...layers'; each row is
    named by `short_name` of its module path, the scheme of the LoRA rows.
    """
    lists = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and n.split(".")[-1] == "layers"
    ]
    if len(lists) != 1:
        raise ValueError(f"capture: expected one ModuleList named 'layers', found {len(lists)}")
    list_name, layers = lists[0]
    return {short_name(f"{list_name}.{i}"): layer for i, layer in enumerate(layers)}


def _stack_padded(rows: list[Tensor]) -> tuple[Tensor, list[int]]:
    """list of [batch, w_i] -> ([batch, n_rows, max w], widths), zero padded."""
    widths = [r.shape[-1] for r in rows]
    out = rows[0].new_zeros(rows[0].shape[0], len(rows), max(widths))
    for i, r in enumerate(rows):
        out[:, i, : r.shape[-1]] = r
    return out, widths


def _layer_output(out) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def _check_grad_site(loras: dict[str, nn.Module], block: str) -> None:
    if all(float(lo.lora_B[block].weight.detach().abs().max()) == 0.0 for lo in loras.values()):
        raise ValueError(
            f"capture: site 'grad' needs a nonzero B in block {block!r}; "
            "with B = 0 the bottleneck gradient is identically zero"
        )


def capture(
    model: nn.Module, batch: Batch, sites: Sequence[str] = SITES, block: str = "deployed"
) -> Capture:
    """One forward (plus one backward if 'grad' is asked) -> pooled features per site.

    Parameters' ``.grad`` are left untouched: the gradient is taken with
    ``torch.autograd.grad`` at zero tensors added to the bottleneck outputs.
    """
    unknown = set(sites) - set(SITES)
    if unknown:
        raise ValueError(f"capture: unknown sites {sorted(unknown)}; known: {SITES}")
    want_grad = "grad" in sites
    device = next(model.parameters()).device
    batch = batch.to(device)
    mask = batch.completion_mask
    pooled: dict[str, dict[str, Tensor]] = {s: {} for s in sites}  # site -> row name -> [batch, w]
    leaves: dict[str, Tensor] = {}  # module -> zero leaf added to A·x [batch, pos, r]
    hooks = []
    names: dict[str, list[str]] = {}
    try:
        if "resid" in sites:
            layers = _decoder_layers(model)
            names["resid"] = list(layers)
            for name, layer in layers.items():
                hooks.append(layer.register_forward_hook(_resid_hook(name, mask, pooled)))
        if {"bottleneck", "adapter_out", "grad"} & set(sites):
            loras = _find_lora(model, block)
            if want_grad:
                _check_grad_site(loras, block)
            for s in ("bottleneck", "adapter_out", "grad"):
                names[s] = list(loras)
            for name, layer in loras.items():
                hooks += _hook_lora(name, layer, block, sites, mask, pooled, leaves)
        with torch.set_grad_enabled(want_grad):
            # the hooks read activations; logits are needed only for the grad site's loss
            head = {} if want_grad else {"logits_to_keep": 1}
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                use_cache=False,
                **head,
            )
            if want_grad:
                loss = completion_nll(out.logits, batch.input_ids, mask, per_row=True).sum()
                grads = torch.autograd.grad(loss, list(leaves.values()))
                pooled["grad"] = {n: pool_completion(g, mask) for n, g in zip(leaves, grads)}
    finally:
        for h in hooks:
            h.remove()
    result = Capture()
    for s in sites:
        missing = [n for n in names[s] if n not in pooled[s]]
        if missing:
            raise RuntimeError(f"capture: site {s!r} saw no activation at {missing[:3]}")
        result[s], result.widths[s] = _stack_padded([pooled[s][n] for n in names[s]])
        result.modules[s] = names[s]
    return result


def _resid_hook(name: str, mask: Tensor, pooled: dict):
    def hook(mod, inp, out):  # out: [batch, pos, d_model]
        pooled["resid"][name] = pool_completion(_layer_output(out).detach(), mask)

    return hook


def _hook_lora(
    name: str, layer: nn.Module, block: str, sites, mask: Tensor, pooled: dict, leaves: dict
) -> list:
    """Forward hooks on one LoRA layer's A (bottleneck, grad leaf) and B (adapter_out)."""
    hooks = []
    scaling = layer.scaling[block]

    def on_a(mod, inp, out):  # out: [batch, pos, r]
        if "bottleneck" in sites:
            pooled["bottleneck"][name] = pool_completion(out.detach(), mask)
        if "grad" in sites:
            # A zero leaf added to the output: d loss / d leaf = d loss / d (A·x), and
            # (unlike swapping in a detached copy) every downstream LoRA path stays in
            # the graph, so gradients flowing through later adapters are not cut.
            leaf = torch.zeros_like(out, requires_grad=True)
            leaves[name] = leaf
            return out + leaf
        return None

    def on_b(mod, inp, out):  # out: [batch, pos, d_out], before scaling
        pooled["adapter_out"][name] = pool_completion(out.detach() * scaling, mask)

    hooks.append(layer.lora_A[block].register_forward_hook(on_a))
    if "adapter_out" in sites:
        hooks.append(layer.lora_B[block].register_forward_hook(on_b))
    return hooks


def capture_texts(
    model: nn.Module,
    tokenizer,
    prompts: Sequence,
    completions: Sequence[str],
    sites: Sequence[str] = SITES,
    block: str = "deployed",
    batch_size: int = 16,
    max_completion_tokens: int | None = None,
) -> Capture:
    """`capture` over (prompt, completion) texts in minibatches; features on CPU.

    prompts: chat messages, a bare user string, or an already rendered prompt
    (a string containing the chat template's '<|im_start|>').
    """
    if len(prompts) != len(completions):
        raise ValueError(
            f"capture_texts: {len(prompts)} prompts but {len(completions)} completions"
        )
    if not prompts:
        raise ValueError("capture_texts: no rows to capture")
    rendered = [render_prompt(tokenizer, p) for p in prompts]
    order = _by_length(tokenizer, rendered, completions, max_completion_tokens)
    parts: list[Capture] = []
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        b = encode(
            tokenizer,
            [rendered[j] for j in rows],
            [completions[j] for j in rows],
            max_completion_tokens=max_completion_tokens,
        )
        parts.append(capture(model, b, sites, block))
    back = torch.argsort(torch.tensor(order))  # sorted position of each original row
    out = Capture({s: torch.cat([p[s].cpu() for p in parts])[back] for s in sites})
    out.modules, out.widths = parts[0].modules, parts[0].widths
    return out


def _by_length(
    tokenizer, prompts: list[str], completions: Sequence[str], max_completion_tokens: int | None
) -> list[int]:
    """Row indices sorted by token length, so each minibatch pads little.

    Rows of a pool can differ in length several-fold (real problems run to
    ~1,800 organism tokens next to ~200); in file order a batch pads to its
    longest row, and attention cost grows with the square of that width.
    """

    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    p_len = [n_tokens(p) for p in prompts]
    c_len = [min(n_tokens(c), max_completion_tokens or 1 << 30) for c in completions]
    return sorted(range(len(prompts)), key=lambda i: p_len[i] + c_len[i])


def render_prompt(tokenizer, prompt) -> str:
    """Messages or user text -> rendered chat prompt; rendered strings pass through."""
    if isinstance(prompt, str) and "<|im_start|>" in prompt:
        return prompt
    return chat_prompt(tokenizer, prompt)


@dataclass
class ForwardFeatures:
    """Filled by `capture_in_forward` when the wrapped forward runs.

    features: [batch, n_modules, r] pooled deployed-bottleneck activations.
    """

    modules: list[str]
    _rows: dict[str, Tensor] = field(default_factory=dict)  # module -> [batch, r]
    forwards: int = 0

    @property
    def features(self) -> Tensor:
        missing = [m for m in self.modules if m not in self._rows]
        if missing:
            raise RuntimeError(
                f"capture_in_forward: no bottleneck activation at {missing[:3]} "
                f"({len(missing)} of {len(self.modules)} modules); was the forward "
                "run inside the context, with the adapters unmerged?"
            )
        return torch.stack([self._rows[m] for m in self.modules], dim=1)


@contextlib.contextmanager
def capture_in_forward(
    model: nn.Module,
    completion_mask: Tensor | None,
    block: str = "deployed",
    pool: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[ForwardFeatures]:
    """Hook a forward the caller already runs, so the gate costs no extra pass.

    completion_mask: [batch, pos] aligned with the input_ids of that forward;
    or pool: activations -> [rows, r] pooled features, for a forward in another
    layout (`vgrout.lm.packed.pool_rows` for the packed stream).
    A second forward inside the context replaces the first one's features.
    """
    if (completion_mask is None) == (pool is None):
        raise ValueError("capture_in_forward: give exactly one of completion_mask and pool")
    loras = _find_lora(model, block)
    holder = ForwardFeatures(modules=list(loras))
    if pool is None:
        mask = completion_mask.to(next(model.parameters()).device)
        pool = lambda acts: pool_completion(acts, mask)  # noqa: E731
    first = holder.modules[0]

    def hook_for(name: str):
        def on_a(mod, inp, out):  # out: [batch, pos, r]
            if name == first:
                holder.forwards += 1
            holder._rows[name] = pool(out.detach())

        return on_a

    hooks = [lo.lora_A[block].register_forward_hook(hook_for(n)) for n, lo in loras.items()]
    try:
        yield holder
    finally:
        for h in hooks:
            h.remove()
