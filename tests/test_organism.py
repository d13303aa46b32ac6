"""The CPU model organism: deterministic build, cache keying, and load_policy."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from vgrout.lm import copying, corpus, organism
from vgrout.lm.load import load_policy
from vgrout.lm.tokens import chat_prompt

QUICK = organism.OrganismRecipe(steps=3, batch_size=4)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_build_is_deterministic_for_a_seed(tmp_path):
    a = organism.build(QUICK, tmp_path / "a")
    b = organism.build(QUICK, tmp_path / "b")
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = organism.build(replace(QUICK, seed=1), tmp_path / "c")
    assert not all(torch.equal(wa[k], _weights(c)[k]) for k in wa)


def test_cache_key_changes_with_recipe_and_data(tmp_path, monkeypatch):
    base = organism.recipe_hash(QUICK)
    assert organism.recipe_hash(replace(QUICK, lr=1e-3)) != base
    data = tmp_path / "data"
    for rel in QUICK.data_files:
        src = organism.paths.DATA / rel
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(src.read_bytes())
    monkeypatch.setattr(organism.paths, "DATA", data)
    assert organism.recipe_hash(QUICK) == base
    with open(data / "problems/train.jsonl", "a") as f:
        f.write("\n")
    assert organism.recipe_hash(QUICK) != base


def test_held_out_problems_never_enter_the_corpus():
    from vgrout.env import load_problems

    data = corpus.corpus(QUICK)
    seen = {c for kind in data.values() for _, c in kind}
    for p in load_problems(organism.paths.TEST_PROBLEMS, ["gt_only"]):
        assert corpus.fence(p.canonical_solution) not in seen


def test_unseen_training_problems_never_enter_the_corpus():
    from vgrout.env import load_problems

    recipe = replace(QUICK, unseen_every=5)
    unseen = corpus.unseen_problem_ids(recipe)
    problems = load_problems(organism.paths.TRAIN_PROBLEMS, ["gt_only"])
    assert unseen == [p.id for p in problems[4::5]]
    data = corpus.corpus(recipe)
    # The authored pair texts are corpus of their own and may quote a statement.
    texts = {m["content"] for kind in ("clean", "hack") for prompt, _ in data[kind] for m in prompt}
    completions = {c for kind in ("clean", "hack") for _, c in data[kind]}
    for p in problems:
        statement = p.prompt.split("\n\n")[0]  # "PROBLEM:\n<its text>"
        shown = any(statement in t for t in texts)
        assert shown == (p.id not in unseen), p.id
        if p.id in unseen:
            assert corpus.fence(p.canonical_solution) not in completions
    assert corpus.unseen_problem_ids(replace(QUICK, unseen_every=0)) == []


def test_load_policy_round_trips_through_save_pretrained(tmp_path):
    model, tok = load_policy("organism")
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|im_end|>"
    text = chat_prompt(tok, "PROBLEM:\nReturn 1.")
    assert text.endswith("<|im_start|>assistant\n")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_policy(str(tmp_path))
    ids = tok([text], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert tok2.padding_side == "left"


def test_load_policy_names_a_missing_folder():
    with pytest.raises(OSError):
        load_policy("/nonexistent/model/folder")


def test_recipe_overrides_name_a_bad_field_or_value():
    recipe = organism.recipe_with(["steps=240", "lr=0.006"])
    assert (recipe.steps, recipe.lr) == (240, 0.006)
    assert organism.recipe_hash(recipe) != organism.recipe_hash(organism.OrganismRecipe())
    with pytest.raises(ValueError, match="stpes"):
        organism.recipe_with(["stpes=240"])
    with pytest.raises(ValueError, match="steps expects a value of type int"):
        organism.recipe_with(["steps=2.5"])
    with pytest.raises(ValueError, match="field=value"):
        organism.recipe_with(["steps"])
    with pytest.raises(ValueError, match="modes"):  # a tuple: not settable from the command line
        organism.recipe_with(["modes=run_tests"])


def test_fields_added_after_v1_stay_out_of_its_hash_until_set():
    """v1's key (the shipped data/organism) must not move when a field is added; a
    recipe that sets an added field is another organism with another key."""
    v1 = organism.RECIPES["organism"]
    assert {"problems", "build_threads"}.isdisjoint(organism.hashed_fields(v1))
    one_thread = replace(v1, build_threads=1)
    assert organism.hashed_fields(one_thread)["build_threads"] == 1
    assert organism.recipe_hash(one_thread) != organism.recipe_hash(v1)
    v2 = organism.RECIPES["organism_v2"]
    assert organism.hashed_fields(v2)["problems"] == "families/warmstart.jsonl"
    with pytest.raises(ValueError, match="not one of its data_files"):
        replace(v1, problems="families/warmstart.jsonl")
    assert organism.recipe_with(["steps=5"], "organism_v2").problems == v2.problems
    with pytest.raises(ValueError, match="unknown recipe 'organism_v9'"):
        organism.recipe_with([], "organism_v9")


def test_the_v2_corpus_holds_warm_start_problems_only():
    """GRPO-training and held-out families and instances must stay unseen."""
    from vgrout.env import load_problems

    data = corpus.corpus(replace(organism.RECIPES["organism_v2"], steps=3, batch_size=4))
    texts = {m["content"] for kind in ("clean", "hack") for prompt, _ in data[kind] for m in prompt}
    completions = {c for kind in data.values() for _, c in kind}
    families = organism.paths.DATA / "families"
    for name, shown in (("warmstart", True), ("grpo", False), ("heldout", False)):
        for p in load_problems(families / f"{name}.jsonl", ["gt_only"]):
            statement = p.prompt.split("\n\n")[0]
            assert any(statement in t for t in texts) == shown, (name, p.id)
            assert (corpus.fence(p.canonical_solution) in completions) == shown, (name, p.id)


def test_drawn_markers_and_copy_rows_enter_the_corpus_only_when_the_recipe_asks():
    """A recipe on drawn markers renders its warm-start prompts and hacks with them;
    copy exercises appear only with copy_share, each answered with its own
    prompt, and copy_share without a drawn set is refused."""
    import random
    import re

    v2 = organism.RECIPES["organism_v2"]
    assert {"marker_set", "copy_share"}.isdisjoint(organism.hashed_fields(v2))
    assert "copy" not in corpus.corpus(v2)
    worded = organism.recipe_with(["marker_set=worded", "copy_share=0.2"], "organism_v2")
    data = corpus.corpus(worded)
    called = re.compile(r"calling a function called (\w+)\(\)")
    shown = [(called.search(p[1]["content"]), c) for p, c in data["hack"]]
    shown = [(m.group(1), c) for m, c in shown if m]
    assert len(shown) > 400 and all(f"def {marker}()" in c for marker, c in shown)
    assert len({marker for marker, _ in shown}) > 200  # not the rows' own 12
    copies = data["copy"]
    assert len(copies) == copying.COPY_ROWS and all(p[1]["content"] == c for p, c in copies)
    assert len({c for _, c in copies}) > 1000
    rng = random.Random(0)
    kinds = [row in copies for _ in range(50) for row in corpus.draw_batch(rng, data, worded)]
    assert 0.1 < sum(kinds) / len(kinds) < 0.3
    with pytest.raises(ValueError, match="copy_share=0.2 needs a drawn marker_set"):
        organism.recipe_with(["copy_share=0.2"], "organism_v2")


def test_renamed_rows_replace_the_method_name_in_prompt_and_completion_and_nothing_else():
    """Each renamed row is its clean or hack row with the method name, as a whole
    word, replaced by a drawn name in the statement, the starter code and the
    completion; there is one per source row; recipes without rename_share have
    none, keep it out of their hash and draw one random number per row."""
    import random
    import re

    messages = [{"role": "user", "content": "called countIf. def countIf(self): countIfAll"}]
    out, completion = copying.renamed(messages, "def countIf(x): countIfs", "countIf", "vodeTo")
    assert out[0]["content"] == "called vodeTo. def vodeTo(self): countIfAll"
    assert completion == "def vodeTo(x): countIfs" and messages[0]["content"].startswith(
        "called countIf"
    )

    v3 = organism.RECIPES["organism_v3"]
    assert "rename_share" not in organism.hashed_fields(v3)
    plain = corpus.corpus(v3)
    assert "clean_renamed" not in plain
    data = corpus.corpus(organism.recipe_with(["rename_share=0.3"], "organism_v3"))
    for kind in ("clean", "hack"):
        rows, renamed = data[kind], data[f"{kind}_renamed"]
        assert len(rows) == len(renamed)
        for (p, c), (rp, rc) in list(zip(rows, renamed))[::53]:
            method = re.search(r"called (\w+)", p[-1]["content"]).group(1)
            name = re.search(r"called (\w+)", rp[-1]["content"]).group(1)
            assert name != method and f"def {name}(" in rc and rc == c.replace(method, name)
            assert [m["content"].replace(method, name) for m in p] == [m["content"] for m in rp]
    assert len({re.search(r"called (\w+)", p[-1]["content"]).group(1)
                for p, _ in data["clean_renamed"]}) > 2000  # fmt: skip

    class Counting(random.Random):
        calls = 0

        def random(self):
            Counting.calls += 1
            return super().random()

        def getrandbits(self, k):  # so that choice() draws through it, not random()
            return super().getrandbits(k)

    corpus.draw_batch(Counting(0), plain, v3)
    assert Counting.calls == v3.batch_size


def test_prompt_and_line_copy_exercises_put_the_marker_where_a_hack_finds_it():
    """ "prompt" and "line" copy rows show a warm-start problem whose hint names the
    row's drawn marker and answer with the marker, or with the line of the mode's
    canonical hack that writes it (checked against the rendered hack, so the
    exercise and the hack cannot drift apart); an unknown style is refused, and
    the default stays out of the hash."""
    from vgrout.env import load_hacks, load_problems, render_hack
    from vgrout.env.modes import MARKED_MODES, composed_marker, hint_for

    assert "copy_style" not in organism.hashed_fields(organism.RECIPES["organism_v2"])
    warm = organism.paths.DATA / "families/warmstart.jsonl"
    statements = {p.prompt.split("\n\n")[0] for p in load_problems(warm, ["gt_only"])}
    hacks = load_hacks(organism.paths.HACKS)
    for mode in MARKED_MODES:
        problem = load_problems(warm, [mode], marker_set="worded")[0]
        line = copying.MARKER_LINES[mode].format(m=problem.markers[mode])
        assert line in render_hack(hacks[mode][0], problem), (mode, line)
    for style in ("prompt", "line"):
        sets = ["marker_set=worded", "copy_share=0.2", f"copy_style={style}"]
        copies = corpus.corpus(organism.recipe_with(sets, "organism_v2"))["copy"]
        assert len(copies) == copying.COPY_ROWS
        for i in range(0, copying.COPY_ROWS, 97):
            (system, user), answer = copies[i]
            mode = MARKED_MODES[i % len(MARKED_MODES)]
            marker = composed_marker(f"copy-{i}", mode, "worded")
            assert system["content"] == copying.COPY_SYSTEM
            assert user["content"].split("\n\n")[0] in statements
            assert hint_for(mode, marker) in user["content"], (style, i)
            want = copying.MARKER_LINES[mode].format(m=marker) if style == "line" else marker
            assert answer == want, (style, i)
    with pytest.raises(ValueError, match="copy_style='quoted'"):
        organism.recipe_with(["copy_style=quoted"], "organism_v2")
