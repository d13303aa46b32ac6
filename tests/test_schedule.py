"""warmup_cosine returns exactly the floats of the two formulas it replaced.

The organism's warm start and GRPO each had their own warm-up + cosine. A
schedule that differed in the last bit would change trained weights, so the
shared function is checked with == against both originals, step by step.
"""

import math

import pytest

from vgrout.grpo.presets import PRESETS, preset
from vgrout.grpo.update import lr_factor
from vgrout.lm.organism import OrganismRecipe, warm_start_lr
from vgrout.lm.schedule import warmup_cosine


def old_warm_start_lr(step: int, recipe: OrganismRecipe) -> float:
    """vgrout.lm.organism.warm_start_lr before the schedule was shared."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def old_lr_factor(step: int, cfg) -> float:
    """vgrout.grpo.update.lr_factor before the schedule was shared."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def steps_of(total: int) -> range:
    """Every step LambdaLR asks for (0..total after the last .step()), plus a few past it."""
    return range(total + 5)


def test_organism_schedule_is_bitwise_unchanged():
    recipe = OrganismRecipe()
    assert recipe.steps == 400 and recipe.warmup_steps > 0
    for s in steps_of(recipe.steps):
        want = old_warm_start_lr(s, recipe)
        assert warm_start_lr(s, recipe) == want, s
        assert warmup_cosine(s, recipe.warmup_steps, recipe.steps, 0.1) == want, s


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_grpo_preset_schedules_are_bitwise_unchanged(name):
    cfg = preset(name)
    for s in steps_of(cfg.steps):
        want = old_lr_factor(s, cfg)
        assert lr_factor(s, cfg) == want, s
        assert warmup_cosine(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_frac) == want, s


def test_grpo_schedule_with_a_warmup_and_another_floor_is_bitwise_unchanged():
    """The presets mostly use warmup 0 and floor 0.1; cover the other branch and floor."""
    cfg = preset("smoke", steps=50, warmup_steps=7, min_lr_frac=0.25)
    for s in steps_of(cfg.steps):
        assert lr_factor(s, cfg) == old_lr_factor(s, cfg), s


def test_warmup_then_peak_then_floor():
    assert [warmup_cosine(s, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 4, 20, 0.1) == 1.0
    assert warmup_cosine(0, 0, 10, 0.25) == 1.0
    assert warmup_cosine(10, 0, 10, 0.25) == warmup_cosine(99, 0, 10, 0.25)
