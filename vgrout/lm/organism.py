"""The CPU model organism: a tiny Qwen3 pre-trained here, on which hacking emerges.

A randomly initialised model never writes a hack, so GRPO on it measures
plumbing only. This module trains a byte-level BPE tokenizer and a 0.7M
parameter Qwen3 on the project's own problems (train split only), their
canonical solutions, a small prior of loophole hacks (one family per mode) and
the authored pair texts. The recipe (docs/organism.md) stops the warm start early, at
the point where the model mostly solves but occasionally hacks: a fully
trained model is too robust for hacking to emerge under GRPO.

`ensure_organism()` returns a cached folder keyed by a hash of the recipe and
every data file, so editing a problem rebuilds it and nothing else does.
`RECIPES` names the shipped recipes: "organism" (v1, the hand-written
problems), "organism_v2" (the problem families) and "organism_v3" (v2 taught
to copy markers, so its hacks transfer to evaluation markers; docs/organism.md).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vgrout import paths
from vgrout.env.modes import MODES
from vgrout.files import atomic_dir
from vgrout.lm.copying import COPY_STYLES
from vgrout.lm.corpus import corpus, draw_batch
from vgrout.lm.schedule import warmup_cosine
from vgrout.lm.tokens import chat_prompt, encode

ADDED = "added"
"""Metadata key of recipe fields added after the v1 organism was shipped: at their
default (the value that reproduces v1) they stay out of the recipe hash, so v1's
key, and the record of every organism built before them, is unchanged."""
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class OrganismRecipe:
    """Everything that decides the organism's weights (its hash names the cache)."""

    vocab_size: int = 1000
    """BPE vocabulary asked for; the corpus is small, so fewer may be learned."""
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_positions: int = 1024
    steps: int = 400
    """Warm-start steps. Stopping before the model is robust is the point (see the
    module docstring); with 50 problems in 7 modes it needs ~4x the steps that 24
    problems in one mode did."""
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    hack_prior: float = 0.15
    """Share of warm-start rows whose completion is the prompt mode's hack."""
    unseen_every: int = 5
    """Leave every k-th training problem (positions k-1, 2k-1, ...) out of the warm
    start (0 = none). GRPO still trains on them: like a real model facing problems
    it cannot solve, the organism can only be paid there by its loophole, which is
    the pressure that makes hacking emerge. Where every problem is memorised, a
    hack and a solve pay the same and GRPO has no reason to prefer the hack."""
    hack_variants: int = 1
    """Templates per mode in the prior (the canonical one first). Each extra
    variant dilutes how often the organism sees any one hack: with all 23, no
    hack was learned by step 200 and none emerged."""
    pair_share: float = 0.05
    """Share of rows drawn from authored pair texts (both sides, equally). Their hacks
    write a few fixed markers, so a recipe whose hacks must copy their marker sets
    it to 0 (v3: with them the model recalls those markers; docs/organism.md)."""
    modes: tuple[str, ...] = MODES
    seed: int = 0
    version: int = 4
    """Bump when the build code changes in a way that changes the weights."""
    data_files: tuple[str, ...] = field(
        default=("problems/train.jsonl", "hacks/hacks.jsonl", "pairs/hack_pairs.md")
    )
    build_threads: int = field(default=2, metadata={ADDED: True})
    """torch threads the warm start runs on: part of the recipe, because the thread
    count changes how reductions round, so the same recipe on other threads is
    another organism (and another cache folder)."""
    problems: str = field(default="problems/train.jsonl", metadata={ADDED: True})
    """The warm-start problems, relative to the data folder (one of `data_files`). Only
    this file is read: held-out problems must stay unseen."""
    marker_set: str = field(default="", metadata={ADDED: True})
    """The marker set the warm-start prompts and hacks are rendered with
    (`env.modes.MARKER_SETS`); "" keeps each problem row's own. A drawn set shows
    a marker seen at most a few times in each row, so a hack in the corpus can
    only be learned by copying its marker (alone, that taught no copying:
    docs/organism.md, "Why held-out hacking stops")."""
    copy_share: float = field(default=0.0, metadata={ADDED: True})
    """Share of warm-start rows that are a copy exercise: a short chat asking to
    repeat a marker drawn from `marker_set` (drawn per row: 4,000 rows, ~2,000
    distinct worded markers), answered with it. A tiny model shown thousands of hacks on drawn markers still copies none
    (docs/organism.md); these rows test whether copying taught on its own
    carries over to the hint."""
    copy_style: str = field(default="bare", metadata={ADDED: True})
    """What a copy exercise shows (`COPY_STYLES`): "bare" the marker alone; "prompt"
    a warm-start problem's prompt whose hint names a drawn marker, answered with the
    marker; "line" the same prompt, answered with the one line of the mode's hack
    that writes the marker. The other two put the marker where a hack finds it;
    measured, neither copies more often than "bare", whose run_tests and
    file_marker hacks copy the prompt's marker about half the time
    (docs/organism.md, "When it tries a marked hack, does it copy?")."""

    rename_share: float = field(default=0.0, metadata={ADDED: True})
    """Share of the clean and of the hack rows drawn with the problem's method name
    replaced by a drawn pseudo-word (`copying.renamed`): a hack that calls the
    method pays on an unseen family only if its new name is copied. The hack
    share stays `hack_prior`. Measured at 0.3, the model learns that a name may be
    any syllables, not to copy it (docs/organism.md, "Renamed methods")."""

    def __post_init__(self):
        from vgrout.env.modes import DRAWN_SETS, check_marker_set

        if self.marker_set:
            check_marker_set(self.marker_set)
        if self.copy_share and self.marker_set not in DRAWN_SETS:
            raise ValueError(f"recipe copy_share={self.copy_share} needs a drawn marker_set "
                             f"({DRAWN_SETS}), not {self.marker_set!r}")  # fmt: skip
        if self.copy_style not in COPY_STYLES:
            raise ValueError(
                f"recipe copy_style={self.copy_style!r}: expected one of {COPY_STYLES}"
            )
        if self.problems not in self.data_files:
            raise ValueError(f"recipe problems={self.problems!r} is not one of its data_files "
                             f"{self.data_files}: the hash would miss its bytes")  # fmt: skip


def hashed_fields(recipe: OrganismRecipe) -> dict[str, Any]:
    """The recipe as it is hashed and compared: every field but added ones at their default."""
    out = asdict(recipe)
    for f in fields(recipe):
        if f.metadata.get(ADDED) and out[f.name] == f.default:
            del out[f.name]
    return out


FAMILY_DATA = ("families/warmstart.jsonl", "hacks/hacks.jsonl", "pairs/hack_pairs.md")

RECIPES: dict[str, OrganismRecipe] = {
    "organism": OrganismRecipe(),
    "organism_v2": OrganismRecipe(
        problems=FAMILY_DATA[0],
        data_files=FAMILY_DATA,
        unseen_every=0,  # the GRPO problems (data/families/grpo.jsonl) are all unseen
        # 400 steps underfit the 460-row corpus (held-out-instance solve 0.10, warm-start
        # 0.34); 1600 reach 0.39 and 0.86 (docs/organism.md, "The v2 organism").
        steps=1600,
    ),
}
"""Shipped recipes by name; each ships to data/<name> (vgrout.lm.shipped)."""
RECIPES["organism_v3"] = replace(
    RECIPES["organism_v2"],
    # Hacks that transfer need a model that copies the marker its prompt names: drawn
    # markers so none can be recalled, copy exercises to teach copying, and no pair
    # texts, whose few fixed markers taught recall instead (docs/organism.md, "v3").
    marker_set="worded",
    copy_share=0.2,
    pair_share=0.0,
    build_threads=1,
)


def recipe_hash(recipe: OrganismRecipe) -> str:
    """Hash of the recipe and the bytes of every data file it reads."""
    h = hashlib.sha256(json.dumps(hashed_fields(recipe), sort_keys=True).encode())
    for rel in recipe.data_files:
        p = paths.DATA / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.exists() else b"<absent>")
    return h.hexdigest()[:12]


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE on the corpus, wrapped with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # padding_side must go to the constructor: set afterwards it is not saved.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def make_model(recipe: OrganismRecipe, tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        intermediate_size=recipe.intermediate_size,
        head_dim=recipe.hidden_size // recipe.num_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen3ForCausalLM(cfg)


def completion_only_nll(model, batch) -> torch.Tensor:
    """Mean NLL of completion tokens, projecting only their hidden states to the
    vocabulary: prompts are ~70% of the tokens, so this skips most of the LM head."""
    hidden = model.model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask
    ).last_hidden_state
    scored = batch.completion_mask[:, 1:].bool()  # position t predicts token t+1
    logits = model.lm_head(hidden[:, :-1][scored]).float()  # [n_completion_tokens, vocab]
    return torch.nn.functional.cross_entropy(logits, batch.input_ids[:, 1:][scored])


WARM_START_LR_FLOOR = 0.1
"""Where the warm start's cosine ends, as a share of `lr`. A constant, not a recipe
field: a new field would change every recipe's hash and so the cached organism."""


def warm_start_lr(step: int, recipe: OrganismRecipe) -> float:
    """Linear warm-up, then cosine to 10%: a decayed end point is a stable checkpoint
    (at a constant lr the solve rate of neighbouring checkpoints swings by ~0.1)."""
    return warmup_cosine(step, recipe.warmup_steps, recipe.steps, WARM_START_LR_FLOOR)


def warm_start(model, tokenizer, data: dict, recipe: OrganismRecipe) -> list[float]:
    """Supervised next-token training on the mixed corpus; returns the loss curve."""
    rng = random.Random(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warm_start_lr(s, recipe))
    losses = []
    model.train()
    bar = tqdm(range(recipe.steps), desc="organism warm start", leave=False)
    for _ in bar:
        rows = draw_batch(rng, data, recipe)
        prompts = [chat_prompt(tokenizer, p) for p, _ in rows]
        batch = encode(tokenizer, prompts, [c for _, c in rows])
        loss = completion_only_nll(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def build(recipe: OrganismRecipe, out_dir: Path) -> Path:
    """Build the organism into `out_dir` atomically (a temp folder, then rename);
    an existing `out_dir` is replaced."""
    torch.manual_seed(recipe.seed)
    data = corpus(recipe)
    texts = [chat_prompt_text(p) + c for kind in data.values() for p, c in kind]
    tokenizer = train_tokenizer(texts, recipe.vocab_size)
    torch.manual_seed(recipe.seed)
    model = make_model(recipe, tokenizer)
    losses = warm_start(model, tokenizer, data, recipe)
    from vgrout.machine import machine_record

    info = {
        "recipe": asdict(recipe),
        "machine": machine_record(),  # builds round differently on other CPUs and thread counts
        "losses": losses,
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab": len(tokenizer),
        "corpus": {k: len(v) for k, v in data.items()},
    }

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "organism.json").write_text(json.dumps(info, indent=1))

    return atomic_dir(out_dir, fill)


def chat_prompt_text(prompt: list[dict] | str) -> str:
    """Tokenizer-free ChatML rendering (the tokenizer does not exist yet)."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
    return body + "<|im_start|>assistant\n"


def organism_dir(recipe: OrganismRecipe | None = None) -> Path:
    recipe = recipe or OrganismRecipe()
    return paths.CACHE / "organism" / recipe_hash(recipe)


def ensure_organism(recipe: OrganismRecipe | None = None) -> Path:
    """The organism's folder, building it first if the cache lacks this recipe."""
    recipe = recipe or OrganismRecipe()
    out = organism_dir(recipe)
    if not (out / "organism.json").exists():
        threads = torch.get_num_threads()
        torch.set_num_threads(recipe.build_threads)  # fixed by the recipe, as rounding is
        try:
            build(recipe, out)
        finally:
            torch.set_num_threads(threads)
    return out


def recipe_with(overrides: list[str], name: str = "organism") -> OrganismRecipe:
    """The recipe named `name` with `field=value` overrides, as `--set` takes them.

    Only scalar fields can be set; an unknown recipe or field, or a value of the
    wrong type, raises, naming it, rather than building some other organism.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: expected one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    scalars = {
        f.name: type(getattr(recipe, f.name))
        for f in fields(recipe)
        if isinstance(getattr(recipe, f.name), (int, float, str))
    }
    changes = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in scalars:
            raise ValueError(
                f"--set {item!r}: expected field=value with field one of {sorted(scalars)}"
            )
        try:
            changes[name] = scalars[name](value)
        except ValueError:
            raise ValueError(
                f"--set {item!r}: {name} expects a value of type {scalars[name].__name__}"
            ) from None
    return replace(recipe, **changes)
