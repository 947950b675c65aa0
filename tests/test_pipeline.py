"""Pipelines: the schema's errors, every file in pipelines/ checks, and the whole chain on a 2-process local
cluster producing a report page that renders in headless Chromium with no broken image."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tomoflow.cli.main import main
from tomoflow.errors import InputError
from tomoflow.pipeline import STAGES, load_pipeline

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

TINY = """name: tiny
store: tiny.zarr
stages:
  - simulate_tomograms: {count: 1, shape: [192, 192, 96], particles: 40, snr: 1.0, classes: [6zu5, 4v8r], seed: 1}
  - pick
  - evaluate_picks
  - extract: {box: 32, chunk: 16}
  - train: {epochs: 2, batch_size: 8}
  - features
  - cluster: {k: 3}
  - average: {classes: 1, iterations: 1, min_members: 3}
  - report: {tsne_points: 500}
"""


def test_every_pipeline_file_checks():
    files = sorted(PIPELINES.glob("*.yaml"))
    assert {f.name for f in files} >= {"demo.yaml", "full.yaml", "simulate.yaml", "pick.yaml", "extract.yaml",
                                       "train.yaml", "features.yaml", "cluster.yaml", "average.yaml", "report.yaml"}
    seen = set()
    for f in files:
        p = load_pipeline(f)
        seen |= {s.type for s in p.stages}
    assert seen >= set(STAGES) - {"simulate_subtomograms"}
    chain = [s.type for s in load_pipeline(PIPELINES / "demo.yaml").stages]
    assert chain == ["simulate_tomograms", "pick", "evaluate_picks", "extract", "train", "features", "cluster",
                     "average", "report"]


@pytest.mark.parametrize("text, message", [
    ("store: s.zarr\nstages:\n  - simulat_tomograms\n", "stage 1: unknown stage type 'simulat_tomograms'"),
    ("store: s.zarr\nstages:\n  - pick\n  - cluster: {kk: 3}\n", "stage 2 (cluster): unknown key 'kk'"),
    ("store: s.zarr\nstages:\n  - cluster: {k: three}\n", "stage 1 (cluster): 'k' must be int, got 'three'"),
    ("store: s.zarr\nstages:\n  - pick: {method: blob}\n", "'method' must be 'dog' or 'template'"),
    ("store: s.zarr\nstages:\n  - simulate_subtomograms: {per_class: 5}\n", "missing required key 'set'"),
    ("store: s.zarr\nstages:\n  - average: {clusters: [1, x]}\n", "'clusters' must be 'all' or a list of int"),
    ("store: s.zarr\nstages: []\n", "'stages' must be a non-empty list"),
    ("stages:\n  - pick\n", "'store'"),
    ("store: s.zarr\nstagez:\n  - pick\n", "unknown top-level key 'stagez'"),
    ("store: s.zarr\nstages:\n  - pick: {method: dog\n", "not valid YAML at line"),
])
def test_schema_errors_name_the_file_stage_and_key(tmp_path, capsys, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        load_pipeline(f)
    assert str(f) in str(e.value) and message in str(e.value)
    assert main(["run", str(f), "--out", str(tmp_path / "out"), "--local", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out" / "s.zarr").exists()  # nothing ran, no store created


@pytest.mark.slow
def test_full_chain_on_a_local_cluster_and_the_report_renders(tmp_path, capsys):
    f = tmp_path / "tiny.yaml"
    f.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(f), "--out", str(out), "--local", "2"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+/status", err)
    record = json.loads((out / "run-tiny.json").read_text())
    assert [s["type"] for s in record["stages"]][-1] == "report"
    assert Path(record["performance_report"]).stat().st_size > 10_000  # Dask's performance report
    by_type = {s["type"]: s["summary"] for s in record["stages"]}
    assert by_type["evaluate_picks"]["f1"] > 0.8
    assert by_type["cluster"]["clusters"] == 3
    page = (out / "report.html").read_text()
    for section in ("Dataset", "Picking", "CNN", "Deep structural features", "Clusters", "Per-cluster averages"):
        assert f"<h2>{section}</h2>" in page
    assert page.count("<img") >= 8 and "discrepancy to true map" in page

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium); page content checked above")
    probe = out / "probe.html"  # the page plus a script that counts images that did not load
    probe.write_text(page.replace("</body>", "<script>window.addEventListener('load',()=>{const b=[...document."
                                  "images].filter(i=>!i.complete||i.naturalWidth===0).length;document.body."
                                  "setAttribute('data-images',document.images.length+'/'+b);});</script></body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert m, "the page did not finish loading in Chromium"
    assert int(m.group(1)) == page.count("<img") and int(m.group(2)) == 0  # every image decoded
    shot = out / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_select_clusters_all_listed_largest():
    import numpy as np

    from tomoflow.pipeline.stages import select_clusters

    labels = np.array([0] * 5 + [1] * 30 + [2] * 12 + [3] * 30 + [-1] * 4)
    assert select_clusters(labels, "all", 10) == [1, 2, 3]  # cluster 0 has too few members
    assert select_clusters(labels, "all", 10, largest=2) == [1, 3]
    assert select_clusters(labels, "all", 1, largest=3) == [1, 2, 3]
    assert select_clusters(labels, [0, 2], 10) == [0, 2]  # listed ids are taken as asked
    assert select_clusters(labels, [0, 2], 10, largest=1) == [2]
    assert select_clusters(np.full(5, -1), "all", 10) == [-1]  # not clustered: the whole set
