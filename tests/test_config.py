"""GRPOConfig presets and validation."""

import pytest

from vgrout.grpo.config import GRPOConfig
from vgrout.grpo.presets import PRESETS, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name):
    assert isinstance(preset(name), GRPOConfig)


def test_the_v3_preset_trains_on_the_marker_set_its_organism_was_taught_to_copy():
    """v3 copies markers drawn like its warm start's; on the rows' own twelve training
    markers its marked hacks do not pay (docs/organism.md), so the preset must say so."""
    from vgrout.lm.organism import RECIPES

    config = preset("organism_v3")
    assert config.model == "organism_v3"
    assert config.marker_set == RECIPES["organism_v3"].marker_set == "worded"


def test_the_pressure_preset_trains_only_where_a_loophole_alone_pays():
    """organism_v3_pressure's reason to exist: its training prompts are all unseen
    families (no solve competes with a hack) in modes v3 can hack there, while
    evaluation still covers eq_override and sentinel as loopholes never trained."""
    import json

    from vgrout.env import load_problems
    from vgrout.paths import repo_path

    config = preset("organism_v3_pressure")
    path = repo_path(config.train_problems)
    subsets = {json.loads(line)["subset"] for line in open(path)}
    assert subsets == {"grpo_family"}
    problems = load_problems(path, list(config.trained_modes()), marker_set=config.marker_set)
    assert {p.mode for p in problems} == {"exit_code", "run_tests", "file_marker", "stdout_marker"}
    assert {"eq_override", "sentinel"} <= set(config.modes) - set(config.trained_modes())


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(arm="routeZ"), "arm"),
        (dict(arm="vanilla", placebo=True), "placebo"),
        (dict(arm="vanilla", gen_deploy_frac=0.5), "gen_deploy_frac"),
        (dict(gate_q=0.7), "gate_q"),
        (dict(group_size=1), "group_size"),
        (dict(teacher_n_per_prompt=2), "teacher_off_step"),
        (dict(unrouted_zone="route"), "unrouted_zone"),
        (dict(arm="oracle", keep_low_tail=True), "keep_low_tail"),
        (dict(plain_lora=True), "plain_lora"),
        (dict(arm="vanilla", plain_lora=True, one_product=True), "one_product"),
        (dict(train_modes=("gt_only",)), "train_modes"),
        (dict(train_modes=("sentinel", "sentinel")), "train_modes"),
    ],
)
def test_contradictions_name_their_fields(changes, field):
    with pytest.raises(ValueError, match=field):
        GRPOConfig(**changes).validate()


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="no_such_field"):
        preset("smoke", no_such_field=1)


def test_json_round_trip_keeps_tuples():
    cfg = preset("smoke", modes=("run_tests", "sentinel"))
    back = GRPOConfig.from_json(cfg.to_json())
    assert back == cfg


def test_a_config_from_json_overrides_equals_the_one_its_run_folder_reads_back():
    """Overrides parsed from JSON (`organism_targets.py grid --set
    'train_modes=[...]'`) arrive as lists; the run folder's config.json reads back
    tuples, so unless the config keeps tuples a resumed grid refuses its own runs
    as "a run of a different config"."""
    cfg = preset("smoke", train_modes=["run_tests"], modes=["run_tests", "sentinel"])
    assert cfg.train_modes == ("run_tests",) and cfg.modes == ("run_tests", "sentinel")
    assert GRPOConfig.from_json(cfg.to_json()) == cfg


def test_every_field_has_a_docstring_and_the_command_line_shows_it():
    import dataclasses

    from vgrout.grpo.__main__ import _parser
    from vgrout.grpo.config import field_docs

    docs = field_docs(GRPOConfig)
    missing = [f.name for f in dataclasses.fields(GRPOConfig) if not docs.get(f.name)]
    assert not missing, f"fields without a docstring: {missing}"
    helps = {a.dest: a.help for a in _parser()._actions}
    for name, doc in docs.items():
        assert helps[name].startswith(doc.replace("%", "%%")), name
