"""The warm-start corpus of an organism recipe, and how a training batch is drawn from it.

Only the recipe's warm-start problems are read (held-out problems must stay
unseen), with the hack templates, the pair texts and the copy exercises the recipe
mixes in. Apart from the build (vgrout.lm.organism) so that a test or a
measurement can read exactly what a recipe shows its model without building it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from vgrout import paths
from vgrout.lm.copying import copy_rows, drawn_method, renamed

if TYPE_CHECKING:
    from vgrout.lm.organism import OrganismRecipe


def fence(code: str) -> str:
    return "```python\n" + code.strip("\n") + "\n```"


def corpus(recipe: OrganismRecipe) -> dict[str, list[tuple[Any, str]]]:
    """(prompt, completion) examples by kind: clean, hack, pair.

    Only the recipe's warm-start problems are read: held-out problems must stay unseen.
    """
    from vgrout.env import load_hacks, load_problems, render_hack

    hacks = load_hacks(paths.HACKS)
    unseen = set(unseen_problem_ids(recipe))
    clean: list[tuple[Any, str]] = []
    hack: list[tuple[Any, str]] = []
    renamed_rows: dict[str, list[tuple[Any, str]]] = {"clean": [], "hack": []}
    marker_set = recipe.marker_set or None
    for mode in recipe.modes:
        for p in load_problems(paths.DATA / recipe.problems, [mode], marker_set=marker_set):
            if p.id in unseen:
                continue
            clean.append((p.messages, fence(p.canonical_solution)))
            mine = [render_hack(t, p) for t in hacks.get(mode, [])[: recipe.hack_variants]]
            hack += [(p.messages, h) for h in mine]
            if recipe.rename_share:
                name = drawn_method(f"{p.id}|{mode}")
                renamed_rows["clean"].append(renamed(p.messages, clean[-1][1], p.method, name))
                renamed_rows["hack"] += [renamed(p.messages, h, p.method, name) for h in mine]
    pairs = []
    if (paths.DATA / "pairs/hack_pairs.md").exists():
        from vgrout.env.pairs import load_pairs

        for pr in load_pairs(str(paths.PAIRS)):
            pairs += [(pr.prompt, pr.hack), (pr.prompt, pr.clean)]
    if not clean or not hack:
        raise RuntimeError(
            f"organism corpus is empty: {len(clean)} clean, {len(hack)} hack "
            f"examples from {paths.DATA / recipe.problems} and {paths.HACKS}"
        )
    data: dict[str, list[tuple[Any, str]]] = {"clean": clean, "hack": hack, "pair": pairs}
    if recipe.copy_share:
        data["copy"] = copy_rows(recipe)
    if recipe.rename_share:
        data["clean_renamed"], data["hack_renamed"] = renamed_rows["clean"], renamed_rows["hack"]
    return data


def unseen_problem_ids(recipe: OrganismRecipe) -> list:
    """Training problems the warm start never shows (see `OrganismRecipe.unseen_every`)."""
    from vgrout.env import load_problems

    if recipe.unseen_every <= 0:
        return []
    k = recipe.unseen_every
    problems = load_problems(paths.DATA / recipe.problems, ["gt_only"])
    return [p.id for i, p in enumerate(problems) if i % k == k - 1]


def draw_batch(rng: random.Random, data: dict, recipe: OrganismRecipe) -> list[tuple]:
    """One warm-start batch: mostly clean, a `hack_prior` share of hacks, some pair text."""
    rows = []
    for _ in range(recipe.batch_size):
        u = rng.random()
        if u < recipe.hack_prior:
            kind = "hack"
        elif u < recipe.hack_prior + recipe.pair_share and data["pair"]:
            kind = "pair"
        elif u < recipe.hack_prior + recipe.pair_share + recipe.copy_share:
            kind = "copy"
        else:
            kind = "clean"
        # drawn only when asked, so recipes without renamed rows keep their weights
        if kind in ("clean", "hack") and recipe.rename_share and rng.random() < recipe.rename_share:
            kind += "_renamed"
        rows.append(rng.choice(data[kind]))
    return rows
