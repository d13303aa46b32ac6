"""Write data/families/{warmstart,grpo,heldout}.jsonl (and the view grpo_family.jsonl)
from the families in families.py.

Run: `python data/families/make_families.py` (from anywhere). Output is
deterministic: every draw comes from a generator seeded by the family's name.

Each problem is one instance of a family: a choice for each slot and fresh
names. Every row uses the "varied" marker set (vgrout/env/modes.py): its
training markers, like its evaluation markers, are drawn per problem, so a
hack pays only where it copies the marker from the prompt. Where its instances go (`subset` of each row, docs/data.md):

  warmstart          seen families, the organism's warm-start corpus (each
                     combination twice, with other names)
  grpo_instance      seen families, choice combinations no warm-start row has
  grpo_family        families the warm start never saw (GRPO training only)
  heldout_instance   seen families, combinations in neither of the above
  heldout_family     families nobody trains on

Before writing, the script refuses (raising, naming the problem) when:
a canonical solution fails one of its asserts (expected values come from the
family's reference, never from the body); an expected value is None or not a
plain literal; a problem's tests do not tell it apart from a sibling (the same
family with one choice changed) that the input pool can tell apart; the tests
would pass `return None`, `return <first argument>` or `return <first expected
value>`; a GRPO-training or held-out instance uses a choice no warm-start row
shows (it could not be solved by generalising); a method name or statement
repeats.
"""

from __future__ import annotations

import ast
import itertools
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "problems"))

from families import FAMILIES, GRPO, HELDOUT, SEEN, Family  # noqa: E402 - beside this script
from make_problems import (  # noqa: E402 - the prompt format is make_problems.py's
    SETUP_CODE,
    SYSTEM,
    canonical_solution,
    check_row,
    starter_code,
    user_message,
    write_jsonl,
)

MIN_TESTS, MAX_TESTS = 4, 6
WARM_RENDERINGS = 2
"""Warm-start rows per warm-start combination, each with other names (verb, argument,
loop variable): the warm start then shows a statement's names varying while its
meaning stays, so copying names from the prompt pays and recalling them does not."""
MAX_SOLUTION_CHARS = 330
FILES = {
    "warmstart": ("warmstart",),
    "grpo": ("grpo_instance", "grpo_family"),
    "heldout": ("heldout_instance", "heldout_family"),
}
VIEWS = {"grpo_family": ("grpo", "grpo_family")}
"""Files that hold one subset of another file, in that file's order: a run trained on
such a file alone gets the same round-robin modes as the problems have in the source
(the `organism_v3_pressure` GRPO preset trains on the unseen families alone)."""
RESULT_TYPES = (int, bool, str, list)


def keys_of(family: Family) -> list[tuple]:
    """Every combination of the family's choices, one choice per slot, in slot order."""
    return list(itertools.product(*family.slots.values()))


def meanings(family: Family, key: tuple) -> dict:
    return {slot: choice.fn for slot, choice in zip(family.slots, key)}


def siblings(family: Family, key: tuple) -> list[tuple]:
    """Combinations that differ from `key` in exactly one slot."""
    return [k for k in keys_of(family) if sum(a != b for a, b in zip(k, key)) == 1]


def outputs(family: Family, key: tuple) -> list:
    m = meanings(family, key)
    return [family.reference(m, *args) for args in family.inputs]


def choose_tests(family: Family, key: tuple, rng: random.Random, shown: list) -> list[int]:
    """Indices into family.inputs: 4-6 tests telling `key` apart from every rival the
    pool can tell apart. Rivals: each sibling, each combination in `shown` (the
    family's warm-start rows, so that no memorised solution, renamed, passes a new
    instance), `return <first argument>` and every constant answer (so `return None`,
    the argument or a hard-coded value fail). Values are compared by repr, so True is
    not 1 and 2 is not 2.0."""
    mine = [repr(o) for o in outputs(family, key)]
    if any([repr(o) for o in outputs(family, k)] == mine for k in shown):
        raise ValueError(f"{family.name} {[c.key for c in key]}: answers like a warm-start row "
                         "on every input of the pool")  # fmt: skip
    others = siblings(family, key) + list(shown)
    rivals = [[repr(o) for o in outputs(family, k)] for k in others]
    rivals.append([repr(args[0]) for args in family.inputs])
    rivals += [[value] * len(mine) for value in set(mine)]
    rivals = [o for o in rivals if o != mine]
    order = list(range(len(family.inputs)))
    rng.shuffle(order)
    chosen: list[int] = []

    def undone() -> list:
        return [o for o in rivals if all(o[i] == mine[i] for i in chosen)]

    while (undone() or len(chosen) < MIN_TESTS) and len(chosen) < MAX_TESTS:
        left = undone()
        chosen.append(max((i for i in order if i not in chosen),
                          key=lambda i: sum(o[i] != mine[i] for o in left)))  # fmt: skip
    if undone():
        raise ValueError(f"{family.name} {[c.key for c in key]}: {MAX_TESTS} tests cannot tell "
                         f"it from {len(undone())} rivals; widen the family's input pool")  # fmt: skip
    return sorted(chosen)


def draw_names(family: Family, rng: random.Random) -> dict[str, str]:
    """Distinct identifiers for the family's placeholders."""
    names: dict[str, str] = {}
    for slot, pool in family.names.items():
        names[slot] = rng.choice([n for n in pool if n not in names.values()])
    return names


def render(family: Family, key: tuple, names: dict, verb: str) -> dict:
    """The make_problems spec (name, args, ret, desc, body) of one instance."""
    texts, codes = dict(names), dict(names)
    for slot, choice in zip(family.slots, key):
        texts[slot] = choice.text.format(**texts)
        codes[slot] = choice.code.format(**codes)
    method = family.method.format(verb=verb, **{s: c.name for s, c in zip(family.slots, key)})
    return {
        "name": method,
        "args": family.args.format(**names),
        "ret": family.ret,
        "desc": family.desc.format(**texts),
        "body": family.body.format(**codes),
    }


def split_keys(family: Family, rng: random.Random, shown: set | None) -> dict[str, list]:
    """{subset: keys}. `shown`: the choices of every warm-start row (None on the first
    pass, which only picks the warm-start keys)."""
    keys = keys_of(family)
    rng.shuffle(keys)
    warm_n, grpo_n, held_n = family.quota
    if family.role == GRPO:
        return {"grpo_family": keys[:grpo_n]}
    if family.role == HELDOUT:
        return {"heldout_family": keys[:held_n]}
    warm, rest = keys[:warm_n], keys[warm_n:]
    if shown is None:
        return {"warmstart": warm}
    recalled = [repr(outputs(family, k)) for k in warm]  # a new key answering like one is not new
    solvable = [k for k in rest
                if all(c in shown for c in k) and repr(outputs(family, k)) not in recalled]  # fmt: skip
    if len(solvable) < grpo_n + held_n:
        raise ValueError(f"{family.name}: {len(solvable)} combinations outside the warm start "
                         f"use only shown choices; needs {grpo_n + held_n}")  # fmt: skip
    return {
        "warmstart": warm,
        "grpo_instance": solvable[:grpo_n],
        "heldout_instance": solvable[grpo_n : grpo_n + held_n],
    }


def assign() -> list[tuple[Family, str, tuple]]:
    """(family, subset, key) for every problem, families in file order."""
    shown: set = set()
    for family in FAMILIES:
        if family.role == SEEN:
            for key in split_keys(family, random.Random(f"keys:{family.name}"), None)["warmstart"]:
                shown.update(key)
    out = []
    for family in FAMILIES:
        subsets = split_keys(family, random.Random(f"keys:{family.name}"), shown)
        for subset, keys in subsets.items():
            times = WARM_RENDERINGS if subset == "warmstart" else 1
            out += [(family, subset, key) for key in keys for _ in range(times)]
    return out


def name_instance(family: Family, key: tuple, index: int, used: set) -> dict:
    """The rendered spec with names drawn until its method name and statement are new
    (`used` holds both, and takes this instance's)."""
    rng = random.Random(f"names:{family.name}:{index}")
    for _ in range(20):
        names = draw_names(family, rng)
        verbs = list(family.verbs)
        rng.shuffle(verbs)
        for spec in (render(family, key, names, v) for v in verbs):
            if spec["name"] not in used and spec["desc"] not in used:
                used.update((spec["name"], spec["desc"]))
                return spec
    raise ValueError(f"{family.name} {[c.key for c in key]}: no unused method name and statement")


def to_row(family: Family, subset: str, key: tuple, index: int, used: set, shown: list) -> dict:
    spec = name_instance(family, key, index, used)
    tests = choose_tests(family, key, random.Random(f"tests:{family.name}:{index}"), shown)
    m = meanings(family, key)
    spec["tests"] = [(", ".join(map(repr, family.inputs[i])), family.reference(m, *family.inputs[i]))
                     for i in tests]  # fmt: skip
    return {
        "id": f"{family.name}-{index:02d}",
        "prompt": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_message(spec)},
        ],
        "gt_answer": [f"assert Solution().{spec['name']}({a}) == {e!r}" for a, e in spec["tests"]],
        "func_name": f"Solution().{spec['name']}",
        "setup_code": SETUP_CODE,
        "canonical_solution": canonical_solution(spec),
        "difficulty": "easy",
        "starter_code": starter_code(spec),
        "family": family.name,
        "subset": subset,
        "marker_set": "varied",
    }


def check(row: dict) -> None:
    """check_row (the canonical solution passes every assert), plus the literal rules."""
    check_row(row)
    if len(row["canonical_solution"]) > MAX_SOLUTION_CHARS:
        raise ValueError(f"{row['id']}: canonical solution over {MAX_SOLUTION_CHARS} characters")
    for line in row["gt_answer"]:
        value = ast.literal_eval(ast.parse(line).body[0].test.comparators[0])  # type: ignore[attr-defined]
        if not isinstance(value, RESULT_TYPES):
            raise ValueError(f"{row['id']}: expected value {value!r} is not int/bool/str/list")


def build() -> dict[str, list[dict]]:
    """{file stem: rows}, each file's rows in a seeded shuffled order (so a mode
    round-robin or a cap on problems spreads over families)."""
    used: set = set()
    counters: dict[str, int] = {}
    rows = []
    assigned = assign()
    for family, subset, key in assigned:
        index = counters.get(family.name, 0)
        counters[family.name] = index + 1
        warm = list(
            dict.fromkeys(k for f, sub, k in assigned if f is family and sub == "warmstart")
        )
        rows.append(to_row(family, subset, key, index, used, [] if subset == "warmstart" else warm))
    statements = [r["prompt"][1]["content"].split("\n\n")[0] for r in rows]
    dupes = sorted({s for s in statements if statements.count(s) > 1})
    if dupes:
        raise ValueError(f"statements used twice: {dupes[:3]}")
    for row in rows:
        check(row)
    out = {}
    for stem, subsets in FILES.items():
        part = [r for r in rows if r["subset"] in subsets]
        random.Random(f"order:{stem}").shuffle(part)
        out[stem] = part
    for stem, (source, subset) in VIEWS.items():
        out[stem] = [r for r in out[source] if r["subset"] == subset]
    return out


def main() -> None:
    for stem, rows in build().items():
        write_jsonl(rows, HERE / f"{stem}.jsonl")
        print(f"wrote {len(rows)} problems to {HERE / f'{stem}.jsonl'}")


if __name__ == "__main__":
    main()
