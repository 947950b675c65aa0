"""The README's notebook example runs as written, through the front door (``import tomoflow as tf``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_example() -> str:
    section = README.read_text().split("## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = notebook_example()
    assert code.startswith("import tomoflow as tf") and len(code.strip().splitlines()) <= 17
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102 (the README's own code)
    labels, record, result = env["labels"], env["record"], env["result"]
    ps = env["tf"].ParticleSet(env["store"], "particles")
    assert ps.n >= 10 and len(labels) == ps.n and sorted(record["sizes"]) == sorted(np.bincount(labels, minlength=2))
    # the store-side k-means wrote the same kind of labels into the table, and averaging made a finite map
    assert set(np.unique(ps.rows(slice(0, ps.n), ["cluster"])["cluster"])) <= {0, 1}
    maps, vs, _ = env["store"].read_map("avg")
    assert np.isfinite(maps).all() and maps.std() > 0 and all(r["half_set_resolution_A"] > 0 for r in result["results"])
    assert (tmp_path / "model.keras").is_file() and "[" in capsys.readouterr().out
