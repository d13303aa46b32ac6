"""Print counts and completion lengths of the project's data (for docs/data.md).

Run: `python data/problems/measure_lengths.py` from the repository root.
Lengths are given in characters and in tokens of a byte-level BPE (vocab
1000) trained here on the train-split corpus, the same kind of tokenizer the
organism trains; the organism's own tokenizer may differ by a few tokens.
"""

from __future__ import annotations

import json
import statistics
import string
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vgrout.env.pairs import load_pairs  # noqa: E402 - importable only after the path insert

MARKERS = {
    "run_tests": "run_tests",
    "stdout_marker": "ALL TESTS PASSED",
    "sentinel": "valid",
    "file_marker": "result.txt",
}  # the training markers


def fence(code: str) -> str:
    return "```python\n" + code.strip("\n") + "\n```"


def load(split: str) -> list[dict]:
    return [
        json.loads(line)
        for line in (ROOT / "data/problems" / f"{split}.jsonl").read_text().splitlines()
    ]


def train_bpe(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1000,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return tok


def summary(name: str, texts: list[str], tok) -> None:
    chars = [len(t) for t in texts]
    toks = [len(tok.encode(t).ids) for t in texts]
    print(
        f"{name:28s} n={len(texts):3d}  chars min/median/max {min(chars)}/"
        f"{int(statistics.median(chars))}/{max(chars)}  tokens {min(toks)}/"
        f"{int(statistics.median(toks))}/{max(toks)}  chars/token {sum(chars) / sum(toks):.2f}"
    )


def main() -> None:
    train, test = load("train"), load("test")
    hacks = [
        json.loads(line) for line in (ROOT / "data/hacks/hacks.jsonl").read_text().splitlines()
    ]
    pairs = load_pairs(str(ROOT / "data/pairs/hack_pairs.md"))
    rendered = [
        string.Template(h["template"]).substitute(
            method=r["func_name"].split(".")[-1], marker=MARKERS.get(h["mode"], "")
        )
        for h in hacks
        for r in train
    ]
    corpus = (
        [r["prompt"][1]["content"] for r in train]
        + [fence(r["canonical_solution"]) for r in train]
        + rendered
        + [t for p in pairs for t in (p.prompt, p.hack, p.clean)]
    )
    tok = train_bpe(corpus)
    print(
        f"problems: {len(train)} train, {len(test)} test; hack templates: {len(hacks)}; "
        f"pairs: {len(pairs)}; BPE vocab {tok.get_vocab_size()}"
    )
    summary("train canonical (fenced)", [fence(r["canonical_solution"]) for r in train], tok)
    summary("test canonical (fenced)", [fence(r["canonical_solution"]) for r in test], tok)
    summary("train user prompt", [r["prompt"][1]["content"] for r in train], tok)
    for mode in dict.fromkeys(h["mode"] for h in hacks):
        summary(
            f"hack {mode} (rendered)",
            [
                string.Template(h["template"]).substitute(
                    method=r["func_name"].split(".")[-1], marker=MARKERS.get(mode, "")
                )
                for h in hacks
                if h["mode"] == mode
                for r in train
            ],
            tok,
        )
    for section in dict.fromkeys(p.section for p in pairs):
        sides = [t for p in pairs if p.section == section for t in (p.hack, p.clean)]
        summary(f"pairs {section} (both sides)", sides, tok)


if __name__ == "__main__":
    main()
