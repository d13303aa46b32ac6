"""The reference data come by one command, checked file by file, or not at all.

There is no network here, so fetching is tested against local git repositories
(a ``file://`` URL and a plain path), which git fetches exactly as it fetches
GitHub. The committed manifest itself is checked against the real data when
this checkout has them beside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from vgrout import paths
from vgrout.env import reference


def _repo(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    """A git repository holding `files`; (its folder, the commit)."""
    repo = tmp_path / "src"
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=repo, check=True, capture_output=True, text=True).stdout  # fmt: skip

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "data")
    return repo, git("rev-parse", "HEAD").strip()


def _manifest(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "manifest.sha256"
    path.write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()))
    return path


FILES = {"data/a.jsonl": b'{"x": 1}\n', "data/pools/b.jsonl.gz": b"\x1f\x8b binary"}


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "path"])
def test_fetch_stores_every_listed_file_at_the_pinned_commit(tmp_path, as_url):
    repo, commit = _repo(tmp_path, {**FILES, "code/unlisted.py": b"print()\n"})
    source = repo.as_uri() if as_url else str(repo)
    out = reference.fetch(source, commit, tmp_path / "cache", _manifest(tmp_path, FILES))
    assert out == tmp_path / "cache" / "vgrout_pub"
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert not (out / "code").exists(), "only the listed files are stored"


def test_a_wrong_hash_names_the_file_and_writes_nothing(tmp_path):
    repo, commit = _repo(tmp_path, {**FILES, "data/a.jsonl": b'{"x": 2}\n'})
    with pytest.raises(reference.ReferenceError, match=r"data/a\.jsonl: sha256 .* expected"):
        reference.fetch(str(repo), commit, tmp_path / "cache", _manifest(tmp_path, FILES))
    assert not (tmp_path / "cache" / "vgrout_pub").exists()


def test_a_listed_file_missing_from_the_commit_is_named(tmp_path):
    repo, commit = _repo(tmp_path, {"data/a.jsonl": FILES["data/a.jsonl"]})
    with pytest.raises(reference.ReferenceError, match=r"data/pools/b\.jsonl\.gz: not in commit"):
        reference.fetch(str(repo), commit, tmp_path / "cache", _manifest(tmp_path, FILES))


def test_an_unknown_commit_or_source_fails_with_git_s_message(tmp_path):
    repo, _ = _repo(tmp_path, FILES)
    with pytest.raises(reference.ReferenceError, match="git fetch"):
        reference.fetch(str(repo), "0" * 40, tmp_path / "cache", _manifest(tmp_path, FILES))


def test_a_malformed_manifest_line_is_named(tmp_path):
    bad = tmp_path / "m.sha256"
    bad.write_text(f"{'a' * 64}  data/ok\nnot-a-hash data/x\n")
    with pytest.raises(ValueError, match=r"m\.sha256:2: expected"):
        reference.read_manifest(bad)
    bad.write_text(f"{'a' * 64}  ../outside\n")
    with pytest.raises(ValueError, match=r"m\.sha256:1"):
        reference.read_manifest(bad)


def test_reference_dir_finds_the_variable_or_the_fetched_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("VGROUT_REFERENCE", raising=False)
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    assert paths.reference_dir() is None
    (tmp_path / "cache" / "reference" / "vgrout_pub").mkdir(parents=True)
    assert paths.reference_dir() == tmp_path / "cache" / "reference"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("VGROUT_REFERENCE", str(tmp_path / "elsewhere"))
    assert paths.reference_dir() is None, "a named folder without the data is not the data"


def test_the_committed_manifest_matches_the_real_data_when_present():
    ref = paths.reference_dir()
    if ref is None:
        pytest.skip("reference data absent (python -m vgrout.env.reference fetches them)")
    entries = reference.read_manifest()
    on_disk = {
        str(p.relative_to(ref / "vgrout_pub"))
        for p in (ref / "vgrout_pub").rglob("*")
        if p.is_file()
    }
    assert {n for _, n in entries} == on_disk
    for digest, name in entries:
        got = hashlib.sha256((ref / "vgrout_pub" / name).read_bytes()).hexdigest()
        assert got == digest, name
    names = {n for _, n in entries}
    assert "data/leetcode/leetcode_test_medhard.jsonl" in names  # what reference_pool reads
    assert any(n.startswith("data/pools/teacher_pool/") for n in names)


def test_a_routing_figure_with_the_reference_panel_is_not_replaced_by_one_without(tmp_path):
    from vgrout.figures.routing import would_drop_a_panel

    both = pd.DataFrame({"pool": ["organism", "reference"], "f05": [1.0, 0.5]})
    organism_only = both[both["pool"] == "organism"]
    assert would_drop_a_panel(organism_only, tmp_path) == [], "nothing saved yet"
    both.to_csv(tmp_path / "routing_classifier.csv", index=False)
    assert would_drop_a_panel(organism_only, tmp_path) == ["reference"]
    assert would_drop_a_panel(both, tmp_path) == []


def test_the_command_reports_a_failure_on_one_line(tmp_path, capsys):
    code = reference.main(["--source", str(tmp_path / "nowhere"), "--dest", str(tmp_path / "d")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{reference.FETCH_COMMAND}: error: git fetch") and "\n" not in err
    assert os.listdir(tmp_path) == []
