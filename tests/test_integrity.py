"""Store integrity under hostile names and failures (issue 19): a name never reaches outside its store, and a
failed command never deletes work that is already in the store. Each probe runs on stores whose every file is
hashed before and after."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tomoflow.cli.common import writable_store
from tomoflow.errors import StoreError
from tomoflow.store import ParticleSet, Store, create_particle_set, import_mrc
from conftest import run_cli, snapshot, write_mrc


def _store(path, rng):
    s = Store.create(path)
    import_mrc(s, write_mrc(path.parent / f"{path.stem}.mrc", rng.normal(size=(20, 24, 28)).astype(np.float32)),
               name="t1", chunk=16)
    ps = create_particle_set(s, "sub", {"tomogram": ["t1"] * 4, "x": [50.0, 60, 70, 80], "y": [50.0] * 4,
                                        "z": [40.0] * 4}, box_size=8, voxel_size=9.2)
    ps.write_volumes(0, rng.normal(size=(4, 8, 8, 8)).astype(np.float32))
    ps.create_array("features", (3,), attrs={"what": "victim"})
    ps.array("features")[:] = rng.normal(size=(4, 3)).astype(np.float32)
    return s


@pytest.fixture
def stores(tmp_path, rng):
    """(attacker's store, victim store beside it)."""
    (tmp_path / "a").mkdir()
    return _store(tmp_path / "a" / "s.zarr", rng), _store(tmp_path / "victim.zarr", rng)


@pytest.mark.parametrize("name_of", [
    lambda v: "../../victim.zarr/particles/sub",  # relative, climbing out of the store
    lambda v: str(v.path.resolve() / "particles" / "sub"),  # absolute: Path / "/abs" would drop the store's path
])
@pytest.mark.parametrize("command", [
    ["cluster", "{s}", "{set}", "-k", "2", "--features", "features", "--workers", "0"],
    ["average", "{s}", "{set}", "--name", "evil", "--classes", "1", "--iterations", "0", "--workers", "0"],
    ["extract", "{s}", "{set}", "--out", "x", "--box", "4", "--workers", "0"],
    ["export-mrc", "{s}", "--particles", "{set}", "--index", "0", "-o", "{tmp}/out.mrc"],
])
def test_a_name_cannot_reach_another_store(tmp_path, capsys, stores, name_of, command):
    s, victim = stores
    before, mine = snapshot(victim.path), snapshot(s.path)
    name = name_of(victim)
    args = [a.format(s=s.path, set=name, tmp=tmp_path) for a in command]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith("tomoflow: error: ") and "invalid particle set name" in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(victim.path) == before and snapshot(s.path) == mine


def test_every_store_entry_point_checks_the_name(stores):
    s, _ = stores
    for call in (lambda: s.has("particles", "../x"), lambda: s.require("tomograms", "/etc"),
                 lambda: s.node_path("maps", "a/b"), lambda: s.attrs("curves", ".."),
                 lambda: ParticleSet(s, "sub").array("../../../victim")):
        with pytest.raises(StoreError, match="invalid"):
            call()


def test_a_failed_command_removes_only_an_empty_store_it_created(tmp_path, rng):
    new = tmp_path / "new.zarr"
    with pytest.raises(RuntimeError), writable_store(new):
        raise RuntimeError("bad input found after the store was made")
    assert not new.exists()  # nothing was written: the store the command would have created is not there

    # another command writes into the new store while the first one is still running, then the first fails:
    # the other's finished work stays (it was deleted before)
    with pytest.raises(RuntimeError), writable_store(new) as st:
        import_mrc(Store.open(new), write_mrc(tmp_path / "good.mrc", rng.normal(size=(8, 8, 8)).astype(np.float32)))
        raise RuntimeError("the first command's own input was bad")
    assert Store.open(new).names("tomograms") == ["good"]

    # Ctrl-C in the middle of the first command on a new store: its finished chunks stay, a rerun resumes
    other = tmp_path / "other.zarr"
    with pytest.raises(KeyboardInterrupt), writable_store(other) as st:
        create_particle_set(st, "d", {"x": [1.0, 2.0]})
        raise KeyboardInterrupt
    assert Store.open(other).names("particles") == ["d"]


# ---- bad input: one line, exit 2, every store exactly as it was --------------------------------------------
def _files(tmp):
    """Bad files for the probes, made on first use."""
    import warnings

    import mrcfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(tmp / "vinf.mrc", overwrite=True) as m:
            m.set_data(np.zeros((8, 8, 8), np.float32))
            m.voxel_size = float("inf")
    write_mrc(tmp / "nx1.mrc", np.zeros((8, 8, 1), np.float32))
    (tmp / "dup.star").write_text("data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                                  "_rlnCoordinateZ #3\n_rlnCoordinateX #4\n1 2 3 4\n")
    (tmp / "text.star").write_text("data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                                   "_rlnCoordinateZ #3\n_tomoflowTrueClass #4\n1 2 3 ribosome\n")
    (tmp / "nofile.yaml").write_text("store: new.zarr\nstages:\n  - import_tomograms: {files: [nothing*.mrc]}\n")
    (tmp / "neg.yaml").write_text("store: new.zarr\nstages:\n  - extract: {box: -5}\n")
    (tmp / "lol.yaml").write_text("store: new.zarr\na: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: &b [*a, *a, *a, *a, *a]\n"
                                  "stages: [*b]\n")
    for f in ("ca", "cert", "key"):
        (tmp / f"{f}.pem").write_text("x")


PROBES = {  # name: (command, what the line names, the problem)
    "features: missing model": (["features", "{s}", "sub", "--model", "{tmp}/nope.keras", "--workers", "0"],
                                "nope.keras", "no such model file"),
    "features: batch 0": (["features", "{s}", "sub", "--model", "m.keras", "--batch-size", "0"], "--batch-size",
                          "must be >= 1"),
    "features: long name": (["features", "{s}", "sub", "--model", "{tmp}/nope.keras", "--name", "n" * 120,
                             "--workers", "0"], "n" * 120, "invalid array name"),
    "average: classes 0": (["average", "{s}", "sub", "--name", "a", "--classes", "0"], "--classes", ">= 1"),
    "average: iterations -1": (["average", "{s}", "sub", "--name", "a", "--iterations", "-1"], "--iterations", ">= 0"),
    "average: angular step 0": (["average", "{s}", "sub", "--name", "a", "--angular-step", "0"], "--angular-step",
                                ">= 10"),
    "average: name of another stage's arrays": (["average", "{s}", "sub", "--name", "features", "--workers", "0"],
                                               "sub", "not written by averaging"),
    "average: particles without a wedge": (["average", "{s}", "sub", "--name", "a", "--workers", "0"], "sub",
                                           "have no missing wedge"),
    "filter: sigma -1": (["filter", "{s}", "t1", "gaussian", "--out", "f", "--sigma", "-1"], "--sigma", "> 0"),
    "train: train fraction 0": (["train", "{s}", "sub", "-o", "{tmp}/m.keras", "--train-fraction", "0"],
                                "--train-fraction", "> 0"),
    "train: epochs 0": (["train", "{s}", "sub", "-o", "{tmp}/m.keras", "--epochs", "0"], "--epochs", ">= 1"),
    "extract: chunk 0": (["extract", "{s}", "sub", "--out", "x", "--chunk", "0"], "--chunk", ">= 1"),
    "extract: box -4": (["extract", "{s}", "sub", "--out", "x", "--box", "-4"], "--box", ">= 4"),
    "extract: box 500, 119 GiB": (["extract", "{s}", "sub", "--out", "x", "--box", "500", "--edge", "pad"], "--box",
                                  "GiB per task"),
    "cluster: k 0": (["cluster", "{s}", "sub", "-k", "0"], "--k", ">= 1"),
    "cluster: k -3": (["cluster", "{s}", "sub", "-k", "-3"], "--k", ">= 1"),
    "cluster: imported clusters": (["cluster", "{s}", "imported", "-k", "2", "--workers", "0"], "imported",
                                   "--overwrite"),
    "pick: sigma 0": (["pick", "dog", "{s}", "t1", "--out", "p", "--sigma", "0"], "options", "> 0"),
    "pick: K 1.0": (["pick", "dog", "{s}", "t1", "--out", "p", "--k", "1.0"], "options", "K > 1"),
    "pick: 10^8 rotations": (["pick", "template", "{s}", "t1", "--out", "p", "--template", "6zu5",
                              "--angular-step", "0.5"], "--angular-step", ">= 3"),
    "import: voxel size inf": (["import-tomogram", "{s}", "{tmp}/vinf.mrc"], "vinf.mrc", "not a number"),
    "import: nx = 1": (["import-tomogram", "{s}", "{tmp}/nx1.mrc"], "nx1.mrc", "at least 2 voxels"),
    "import: tilt range reversed": (["import-tomogram", "{s}", "{tmp}/nx1.mrc", "--tilt-range", "60", "-60"],
                                    "--tilt-range", "MIN < MAX"),
    "import: tilt range NaN": (["import-tomogram", "{s}", "{tmp}/nx1.mrc", "--tilt-range", "nan", "60"],
                               "--tilt-range", "got nan"),
    "import-star: duplicate column": (["import-star", "{s}", "{tmp}/dup.star", "--set", "d", "--tomogram", "t1"],
                                      "dup.star", "appears twice"),
    "import-star: class as text": (["import-star", "{s}", "{tmp}/text.star", "--set", "d", "--tomogram", "t1"],
                                   "text.star", "non-numeric value 'ribosome' in tomoflowTrueClass"),
    "estimate: a set without subtomograms": (["estimate", "snr", "{s}", "imported"], "s.zarr", "only a table"),
    "estimate: wedge of no subtomograms": (["estimate", "wedge", "{s}", "--set", "imported"], "s.zarr",
                                           "no subtomograms"),
    "rif-svm: a set without labels": (["rif-svm", "{s}", "sub", "--workers", "0"], "sub",
                                      "without a true class"),
    "export: missing folder": (["export-mrc", "{s}", "--particles", "sub", "--index", "0", "-o",
                                "{tmp}/no/such/dir/x.mrc"], "x.mrc", "No such file or directory"),
    "run: box -5": (["run", "{tmp}/neg.yaml", "--out", "{tmp}/run"], "neg.yaml", "'box' must be >= 4"),
    "run: a stage fails in a new store": (["run", "{tmp}/nofile.yaml", "--out", "{tmp}", "--local", "0",
                                           "--no-performance-report"], "nothing*.mrc", "no file matches"),
    "run: YAML aliases": (["run", "{tmp}/lol.yaml", "--out", "{tmp}/run"], "lol.yaml", "aliases"),
    "run: --local with TLS": (["run", "{tmp}/neg.yaml", "--local", "1", "--tls-ca-file", "{tmp}/ca.pem",
                               "--tls-cert", "{tmp}/cert.pem", "--tls-key", "{tmp}/key.pem"], "--tls-*",
                              "need --scheduler"),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_bad_input_is_one_line_exit_2_and_the_store_unchanged(tmp_path, capsys, rng, probe):
    s = _store(tmp_path / "s.zarr", rng)
    ps = ParticleSet(s, "sub")
    ps.create_array("features_class", (), "int32", fill_value=-1, attrs={"model": "a CNN's"})
    create_particle_set(s, "imported", {"tomogram": ["t1"] * 4, "x": np.ones(4), "cluster": [0, 1, 0, 1]})
    ParticleSet(s, "imported").create_array("features", (2,))
    _files(tmp_path)
    before = snapshot(tmp_path)
    command, what, problem = PROBES[probe]
    code, _, err = run_cli(capsys, *[a.format(s=s.path, tmp=tmp_path) for a in command])
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    if command[0] == "run":  # a pipeline says which stage it starts before the error
        lines = [ln for ln in lines if not re.match(r"tomoflow: (pipeline '|\[\d+/\d+\] )", ln)]
    assert len(lines) == 1 and lines[0].startswith("tomoflow: error: "), err
    assert what in lines[0] and problem in lines[0], lines[0]
    assert snapshot(tmp_path) == before  # every store (and every other file here) exactly as it was


def test_extract_is_atomic_resumable_and_single_writer(tmp_path, rng, monkeypatch):
    """A failed extraction leaves no set (not one with zeros where chunks are missing), its rerun computes only
    the missing chunks and gives the clean result, and a second writer of the same name fails at once."""
    import tomoflow.ops.extraction as ex

    s = Store.create(tmp_path / "s.zarr")
    import_mrc(s, write_mrc(tmp_path / "t.mrc", rng.normal(size=(24, 40, 40)).astype(np.float32)), name="t1",
               chunk=16)
    xyz = rng.uniform(60, 300, size=(20, 3))
    xyz[:, 2] = rng.uniform(60, 160, 20)
    create_particle_set(s, "picks", {"tomogram": ["t1"] * 20, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    clean = ex.extract(s, "picks", "ref", 8, edge="pad", chunk=4)
    want = ParticleSet(s, "ref").read_volumes(slice(0, None))

    real, calls = ex._extract_task, []

    def flaky(store_path, chunk, **kw):
        calls.append(chunk)
        if chunk == 3:
            raise OSError(28, "No space left on device")  # a full disk half way
        return real(store_path, chunk, **kw)

    monkeypatch.setattr(ex, "_extract_task", flaky)
    with pytest.raises(OSError):
        ex.extract(s, "picks", "x", 8, edge="pad", chunk=4)
    assert not s.has("particles", "x")  # nothing half-filled in place
    calls.clear()
    monkeypatch.setattr(ex, "_extract_task", real)
    monkeypatch.setattr(ex, "_extract_task", lambda p, c, **kw: calls.append(c) or real(p, c, **kw))
    assert ex.extract(s, "picks", "x", 8, edge="pad", chunk=4) == clean
    assert calls == [3, 4]  # chunks 0-2 were kept from the failed run
    assert np.array_equal(ParticleSet(s, "x").read_volumes(slice(0, None)), want)

    with s.lock("particles", "y"):  # another command is writing "y"
        with pytest.raises(StoreError, match="another command is writing particle set 'y'"):
            ex.extract(s, "picks", "y", 8, edge="pad", chunk=4)
    assert not s.has("particles", "y")
    ex.extract(s, "picks", "y", 8, edge="pad", chunk=4)  # once it has finished
    with pytest.raises(StoreError, match="already exists"):
        ex.extract(s, "picks", "y", 8, edge="pad", chunk=4)


def test_more_findings(tmp_path, rng, capsys):
    """The rest of the probe list: a STAR tomogram name climbing out of the store, a chunk folder without its file
    (a write that failed on a full disk), class names as HTML in the report, the SLURM scheduler's exposure."""
    import re
    from pathlib import Path

    from tomoflow.report.html import write_report

    (tmp_path / "a").mkdir()
    s, victim = _store(tmp_path / "a" / "s.zarr", rng), _store(tmp_path / "victim.zarr", rng)
    create_particle_set(s, "evil", {"tomogram": ["../../victim.zarr/tomograms/t1"] * 2, "x": [60.0, 70],
                                    "y": [60.0, 70], "z": [40.0, 40]})
    before = snapshot(victim.path)
    code, _, err = run_cli(capsys, "extract", s.path, "evil", "--out", "x", "--box", "8", "--workers", "0")
    assert code == 2 and "invalid tomogram name" in err and snapshot(victim.path) == before

    ps = ParticleSet(s, "sub")
    assert ps.volume_chunks_written() == 1
    (ps.path / "volumes" / "c" / "7").mkdir()  # a folder, its chunk file never written
    assert ps.volume_chunks_written() == 1

    ps2 = create_particle_set(s, "named", {"tomogram": ["t1"], "x": [1.0], "true_class": [0]},
                              class_names=["<script>alert(1)</script>"])
    page = write_report(s, tmp_path / "r.html", set_name="named", truth="named").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    del ps2

    sbatch = (Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "scheduler.sbatch").read_text()
    lines = [ln for ln in sbatch.replace("\\\n", " ").splitlines() if ln.startswith("exec dask scheduler")]
    assert lines and all("--host" in ln and "127.0.0.1:8787" in ln for ln in lines)  # no 0.0.0.0, no :8787
    tls = [ln for ln in sbatch.splitlines() if "--protocol tls" in ln]
    assert tls and re.search(r'TOMOFLOW_PLAIN_TCP:-0}" = 1', sbatch)  # plain TCP only by explicit choice


def test_imported_particles_take_their_tomograms_wedge(tmp_path, rng, capsys):
    """A STAR file without wedge columns: the particles of a tomogram the store holds get its tilt range and axis
    (they used to stay NaN, and averaging then assumed full Fourier coverage)."""
    s = Store.create(tmp_path / "s.zarr")
    import_mrc(s, write_mrc(tmp_path / "t1.mrc", rng.normal(size=(20, 24, 28)).astype(np.float32)), name="t1",
               chunk=16, tilt_range=(-50.0, 48.0), tilt_axis=85.0)
    (tmp_path / "p.star").write_text("data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n"
                                     "_rlnCoordinateY #3\n_rlnCoordinateZ #4\nt1 5 6 7\nt1 8 9 10\n")
    code, _, err = run_cli(capsys, "import-star", s.path, tmp_path / "p.star", "--set", "p", "--pixel-size", "9.2")
    assert code == 0, err
    t = ParticleSet(s, "p").table_frame()
    assert (t.tilt_min == -50).all() and (t.tilt_max == 48).all() and (t.tilt_axis == 85).all()
