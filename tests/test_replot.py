"""`make figures` replots every committed grid: same tables, byte for byte, nothing trained.

Notebooks 03 and 04 of each figure set are executed with the set's own
parameters (which point them at ``results/<set>``) into a temporary folder,
and every csv they write must equal the committed one in ``figures/`` byte for
byte. A grid's tables are pandas arithmetic on stored records, so they do not
depend on the machine; what replotting must never do is train, so the run
folders the yaml names must stay untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vgrout.figures import runner
from vgrout.figures.sets import SETS

REPO = Path(__file__).resolve().parents[1]
COMMITTED = ("primary", "secondary", "replication")
"""Sets whose grids have run and whose results are committed; the others are planned."""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SETS))
def test_replotting_a_committed_grid_gives_the_committed_tables(name, tmp_path):
    fs = SETS[name]
    train = runner.load_params(REPO / "notebooks" / "03_grpo_training.ipynb", fs.params)
    assert train["results"] == f"results/{name}", "the set replots its committed grid"
    why = runner.not_ready(fs)
    if why:
        assert name not in COMMITTED, why
        pytest.skip(f"{why} (make figures skips it too)")
    runs_dir = REPO / train["runs_dir"]
    before = sorted(runs_dir.rglob("*")) if runs_dir.exists() else None
    runner.run_all("notebooks", fs.params, tmp_path / "figs", tmp_path / "exec", only=("03", "04"))
    written = sorted(p.name for p in (tmp_path / "figs").glob("*.csv"))
    assert written, "the notebooks wrote no table"
    committed = REPO / fs.figures
    for csv in written:
        assert (tmp_path / "figs" / csv).read_bytes() == (committed / csv).read_bytes(), (
            f"{fs.figures}/{csv} differs from its replot"
        )
    assert (sorted(runs_dir.rglob("*")) if runs_dir.exists() else None) == before, "trained"
