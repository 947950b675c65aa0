"""copick projects: what tomoflow writes, copick's own API reads (positions, rotations, scores, objects, cluster
sessions, tomogram voxels), what copick's API writes, tomoflow reads, and store -> copick -> store is lossless.

copick 1.x needs zarr 2, so its side runs in the interop interpreter (tests/interop.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, snapshot, write_mrc
from interop import run_python

from tomoflow.kernels.geometry import relion_matrix
from tomoflow.store import ParticleSet, Store, create_particle_set, open_level, tomogram_info

VS = 9.2
N = 32
# (x, y, z) voxel indices of the particles; each one's voxel holds a marker value in the tomogram
VOXELS = np.array([[3, 5, 7], [20, 11, 4], [9, 28, 30], [15, 15, 15], [27, 2, 19], [6, 22, 12], [30, 30, 1]])
CLUSTERS = np.array([-1, 0, 0, 1, 1, 1, 2])
TRUE_CLASS = np.array([0, 0, 1, 1, 0, -1, 1])
CLASS_NAMES = ["ribosome", "apo_ferritin"]  # copick turns "_" into "-"


def _angles(rng, n):
    # tilt away from 0 and 180 so that rot and psi are both visible in the matrix
    return rng.uniform(-180, 180, n), rng.uniform(20, 160, n), rng.uniform(-180, 180, n)


@pytest.fixture
def store_with_picks(tmp_path, capsys):
    rng = np.random.default_rng(21)
    vol = rng.normal(size=(N, N, N)).astype(np.float32)
    for k, (x, y, z) in enumerate(VOXELS):
        vol[z, y, x] = 100.0 + k
    write_mrc(tmp_path / "TS_1.mrc", vol, voxel_size=VS)
    store_path = tmp_path / "store"
    code, _, err = run_cli(capsys, "import-tomogram", store_path, tmp_path / "TS_1.mrc", "--tilt-range", "-54", "57")
    assert code == 0, err
    n = len(VOXELS)
    rot, tilt, psi = _angles(rng, n)
    xyz = VOXELS * VS
    table = {"tomogram": np.array(["TS_1"] * n, dtype=object), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
             "rot": rot, "tilt": tilt, "psi": psi, "cluster": CLUSTERS, "true_class": TRUE_CLASS,
             "score": rng.uniform(0, 1, n).astype(np.float32)}
    create_particle_set(Store.open(store_path), "my_picks", table, class_names=CLASS_NAMES)
    return store_path, vol


READ_PROJECT = r"""
import json, sys, warnings
import numpy as np
import copick
from copick.util.escape import sanitize_name
warnings.simplefilter("ignore")
root = copick.from_file(sys.argv[1])
spacings = json.loads(sys.argv[2])  # run -> voxel spacing
out = {"objects": sorted(o.name for o in root.pickable_objects), "runs": {},
       "labels": {o.name: o.label for o in root.pickable_objects},
       "sanitized": sanitize_name("apo_ferritin", suppress_warnings=True)}
for run in root.runs:
    vs = run.get_voxel_spacing(spacings[run.name])
    tomos = {t.tomo_type: t.numpy().tolist() for t in vs.tomograms}
    picks = []
    for p in run.picks:
        pos, tr = p.numpy()
        df = p.df("relion", voxel_spacing=vs.voxel_size)
        picks.append({"user": p.user_id, "session": p.session_id, "object": p.pickable_object_name,
                      "location": pos.tolist(), "full": p.full_positions().tolist(), "transforms": tr.tolist(),
                      "scores": p.scores().tolist(), "from_tool": p.from_tool,
                      "relion_angles": df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy().tolist(),
                      "relion_centered": df[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst",
                                             "rlnCenteredCoordinateZAngst"]].to_numpy().tolist()})
    out["runs"][run.name] = {"voxel_size": vs.voxel_size, "tomograms": tomos, "picks": picks}
print(json.dumps(out))
"""


def _match(xyz_a, xyz_b):
    """Index into b of each row of a (positions are unique)."""
    d = np.linalg.norm(np.asarray(xyz_a)[:, None] - np.asarray(xyz_b)[None], axis=2)
    assert (d.min(1) < 1e-6).all(), d.min(1)
    return d.argmin(1)


def test_export_reads_in_copick(store_with_picks, tmp_path, capsys):
    store_path, vol = store_with_picks
    project = tmp_path / "project"
    code, out, err = run_cli(capsys, "export-copick", store_path, project, "--set", "my_picks", "--object", "decoy")
    assert code == 0, err
    got = run_python(READ_PROJECT, project / "config.json", json.dumps({"TS_1": VS}))

    assert got["objects"] == sorted(["ribosome", got["sanitized"], "decoy"]) == ["apo-ferritin", "decoy", "ribosome"]
    run = got["runs"]["TS_1"]
    assert run["voxel_size"] == VS
    np.testing.assert_array_equal(np.array(run["tomograms"]["tomoflow"], np.float32), vol)

    table = ParticleSet(Store.open(store_path), "my_picks").table_frame()
    xyz = table[["x", "y", "z"]].to_numpy()
    want_obj = np.array([CLASS_NAMES[c].replace("_", "-") if c >= 0 else "decoy" for c in TRUE_CLASS])
    want_sess = np.array([f"cluster{c}" if c >= 0 else "0" for c in CLUSTERS])
    seen = np.zeros(len(table), int)
    for p in run["picks"]:
        assert p["user"] == "tomoflow"
        assert p["from_tool"] == (p["session"] == "0")
        idx = _match(p["full"], xyz)
        seen[idx] += 1
        assert (want_obj[idx] == p["object"]).all() and (want_sess[idx] == p["session"]).all()
        loc = np.array(p["location"])
        np.testing.assert_allclose(loc, xyz[idx], atol=1e-9)  # the centre is the location (no shift)
        # copick's location is voxel index x spacing: the voxel copick finds there holds the particle's marker
        ijk = loc / VS
        np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-9)
        ijk = np.round(ijk).astype(int)
        tomo = np.array(run["tomograms"]["tomoflow"])
        np.testing.assert_array_equal(tomo[ijk[:, 2], ijk[:, 1], ijk[:, 0]], 100.0 + idx)
        # copick's RELION centred coordinates (centre = shape / 2 * spacing) agree with RELION's convention
        np.testing.assert_allclose(p["relion_centered"], xyz[idx] - N / 2 * VS, atol=1e-6)
        tr = np.array(p["transforms"])
        np.testing.assert_allclose(tr[:, :3, 3], 0, atol=1e-12)
        angles = table[["rot", "tilt", "psi"]].to_numpy()[idx]
        want = relion_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
        np.testing.assert_allclose(tr[:, :3, :3], want, atol=1e-6)
        # and copick's own RELION conversion of the transforms gives rotations equal to the set's angles
        back = np.array(p["relion_angles"])
        np.testing.assert_allclose(relion_matrix(back[:, 0], back[:, 1], back[:, 2]), want, atol=1e-6)
        np.testing.assert_array_equal(np.array(p["scores"], np.float32), table["score"].to_numpy()[idx])
    assert (seen == 1).all()


WRITE_PROJECT = r"""
import json, os, sys, warnings
import numpy as np
import copick
from copick.models import PickableObject
warnings.simplefilter("ignore")
folder, vol_path = sys.argv[1], sys.argv[2]
objs = [PickableObject(name="ribosome", is_particle=True, label=1, radius=120.0),
        PickableObject(name="membrane", is_particle=False, label=2)]
root = copick.new_config(os.path.join(folder, "config.json"), overlay_root=os.path.abspath(folder),
                         pickable_objects=objs)
rng = np.random.default_rng(7)
run = root.new_run("TS_002")
vs = run.new_voxel_spacing(10.0)
vs.new_tomogram("wbp").from_numpy(np.load(vol_path))
out = {"picks": []}
for session, n in (("1", 4), ("cluster3", 3)):
    pos = rng.uniform(0, 300, (n, 3))
    q = rng.normal(size=(n, 4)); q /= np.linalg.norm(q, axis=1, keepdims=True)
    from scipy.spatial.transform import Rotation
    tr = np.tile(np.eye(4), (n, 1, 1))
    tr[:, :3, :3] = Rotation.from_quat(q).as_matrix()
    tr[:, :3, 3] = rng.uniform(-20, 20, (n, 3))  # shifts: the centre is location + shift
    scores = rng.uniform(0, 1, n)
    p = run.new_picks("ribosome", session_id=session, user_id="alice")
    p.from_numpy(pos, tr, scores=scores)
    df = p.df("relion")
    out["picks"].append({"session": session, "full": p.full_positions().tolist(), "rotations": tr[:, :3, :3].tolist(),
                         "scores": scores.tolist(),
                         "relion_angles": df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy().tolist()})
out["tomogram"] = run.get_voxel_spacing(10.0).get_tomograms("wbp")[0].numpy().tolist()
print(json.dumps(out))
"""


def test_copick_written_project_imports(tmp_path, capsys):
    vol = np.random.default_rng(3).normal(size=(24, 20, 28)).astype(np.float32)
    np.save(tmp_path / "vol.npy", vol)
    project = tmp_path / "cp"
    project.mkdir()
    made = run_python(WRITE_PROJECT, project, tmp_path / "vol.npy")

    code, out, err = run_cli(capsys, "import-copick", tmp_path / "store", project, "--set", "picked")
    assert code == 0, err
    store = Store.open(tmp_path / "store")
    info = tomogram_info(store, "TS_002")
    assert info.voxel_size == 10.0 and info.shape == vol.shape
    np.testing.assert_array_equal(open_level(store, "TS_002")[...], np.array(made["tomogram"], np.float32))

    ps = ParticleSet(store, "picked")
    t = ps.table_frame()
    assert ps.n == 7 and set(t["tomogram"]) == {"TS_002"} and ps.class_names == ["ribosome"]
    assert (t["true_class"] == 0).all()
    xyz = t[["x", "y", "z"]].to_numpy()
    for p in made["picks"]:
        idx = _match(p["full"], xyz)  # positions include the transforms' shifts
        assert (t["cluster"].to_numpy()[idx] == (3 if p["session"] == "cluster3" else -1)).all()
        mats = relion_matrix(t["rot"].to_numpy()[idx], t["tilt"].to_numpy()[idx], t["psi"].to_numpy()[idx])
        np.testing.assert_allclose(mats, p["rotations"], atol=1e-9)
        # tomoflow's angles are the angles copick itself gives RELION
        np.testing.assert_allclose(t[["rot", "tilt", "psi"]].to_numpy()[idx], p["relion_angles"], atol=1e-6)
        np.testing.assert_allclose(t["score"].to_numpy()[idx], p["scores"], rtol=1e-6)


def test_export_extends_copick_project(store_with_picks, tmp_path, capsys):
    """A project copick made keeps its runs and objects; tomoflow's run and objects are added beside them."""
    store_path, vol = store_with_picks
    np.save(tmp_path / "vol.npy", np.zeros((8, 8, 8), np.float32))
    project = tmp_path / "cp"
    project.mkdir()
    run_python(WRITE_PROJECT, project, tmp_path / "vol.npy")
    code, _, err = run_cli(capsys, "export-copick", store_path, project, "--set", "my_picks", "--user-id", "bob")
    assert code == 0, err
    got = run_python(READ_PROJECT, project / "config.json", json.dumps({"TS_1": VS, "TS_002": 10.0}))
    assert set(got["runs"]) == {"TS_1", "TS_002"}
    assert got["objects"] == ["apo-ferritin", "membrane", "my-picks", "ribosome"]
    assert got["labels"]["ribosome"] == 1 and got["labels"]["membrane"] == 2
    assert sorted(got["labels"].values()) == [1, 2, 3, 4]
    assert {p["user"] for p in got["runs"]["TS_002"]["picks"]} == {"alice"}
    assert {p["user"] for p in got["runs"]["TS_1"]["picks"]} == {"bob"}
    np.testing.assert_array_equal(np.array(got["runs"]["TS_1"]["tomograms"]["tomoflow"], np.float32), vol)


def test_round_trip_store_copick_store(store_with_picks, tmp_path, capsys):
    store_path, vol = store_with_picks
    rng = np.random.default_rng(5)
    # a second set with positions off the voxel grid, no class names, NaN scores
    n = 5
    rot, tilt, psi = _angles(rng, n)
    xyz = rng.uniform(0, (N - 1) * VS, (n, 3))
    create_particle_set(Store.open(store_path), "off_grid", {
        "tomogram": np.array(["TS_1"] * n, dtype=object), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "rot": rot, "tilt": tilt, "psi": psi, "score": np.array([0.5, np.nan, 0.25, 1.0, np.nan], np.float32)})
    project = tmp_path / "project"
    code, _, err = run_cli(capsys, "export-copick", store_path, project, "--set", "my_picks", "--set", "off_grid")
    assert code == 0, err
    back = tmp_path / "back"
    code, _, err = run_cli(capsys, "import-copick", back, project / "config.json", "--set", "a")
    assert code == 0, err
    code, _, err = run_cli(capsys, "import-copick", back, project, "--set", "b", "--object", "off-grid",
                           "--session-id", "0", "--no-tomograms")
    assert code == 0, err

    src, dst = Store.open(store_path), Store.open(back)
    np.testing.assert_array_equal(open_level(dst, "TS_1")[...], vol)
    assert tomogram_info(dst, "TS_1").voxel_size == VS
    assert tomogram_info(dst, "TS_1").tilt_range == (-54.0, 57.0)

    orig = ParticleSet(src, "my_picks").table_frame()
    off = ParticleSet(src, "off_grid").table_frame()
    a = ParticleSet(dst, "a")
    ta = a.table_frame()
    assert a.n == len(orig) + len(off)
    for t0, sub in ((orig, ta[ta["true_class"] != a.class_names.index("off-grid")]),
                    (off, ta[ta["true_class"] == a.class_names.index("off-grid")])):
        idx = _match(sub[["x", "y", "z"]].to_numpy(), t0[["x", "y", "z"]].to_numpy())
        np.testing.assert_array_equal(sub[["x", "y", "z"]].to_numpy(), t0[["x", "y", "z"]].to_numpy()[idx])
        m0 = relion_matrix(*t0[["rot", "tilt", "psi"]].to_numpy()[idx].T)
        m1 = relion_matrix(*sub[["rot", "tilt", "psi"]].to_numpy().T)
        np.testing.assert_allclose(m1, m0, atol=1e-12)
        np.testing.assert_array_equal(sub["score"].to_numpy(), t0["score"].to_numpy()[idx])  # NaN stays NaN
        np.testing.assert_array_equal(sub["cluster"].to_numpy(), t0["cluster"].to_numpy()[idx])
        assert (sub["tilt_min"] == -54).all() and (sub["tilt_max"] == 57).all()  # the tomogram's wedge
    # objects are class names again
    idx = _match(orig[["x", "y", "z"]].to_numpy(), ta[["x", "y", "z"]].to_numpy())
    names = np.array(a.class_names)[ta["true_class"].to_numpy()[idx]]
    assert list(names) == [CLASS_NAMES[c].replace("_", "-") if c >= 0 else "my-picks" for c in orig["true_class"]]
    # filters: one object of one session, picks only
    b = ParticleSet(dst, "b").table_frame()
    assert len(b) == len(off)
    np.testing.assert_array_equal(np.sort(b["x"].to_numpy()), np.sort(off["x"].to_numpy()))


def _copick_project(tmp_path, capsys, store_with_picks):
    store_path, _ = store_with_picks
    project = tmp_path / "project"
    code, _, err = run_cli(capsys, "export-copick", store_path, project, "--set", "my_picks")
    assert code == 0, err
    return store_path, project


def _picks_file(project) -> Path:
    return sorted((project / "ExperimentRuns" / "TS_1" / "Picks").glob("*.json"))[0]


def _edit_points(project, edit):
    f = _picks_file(project)
    doc = json.loads(f.read_text())
    edit(doc["points"])
    f.write_text(json.dumps(doc))


BAD_IMPORTS = {
    "missing config": (lambda p: (p / "config.json").unlink(), [], "no config.json"),
    "malformed config": (lambda p: (p / "config.json").write_text("{not json"), [], "not a readable JSON"),
    "malformed picks": (lambda p: _picks_file(p).write_text("[1, 2"), [], "not a readable JSON"),
    "no location": (lambda p: _edit_points(p, lambda pts: pts[0].pop("location")), [], "no finite location"),
    "NaN location": (lambda p: _edit_points(p, lambda pts: pts[0]["location"].update(x=float("nan"))), [],
                     "no finite location"),
    "infinite score": (lambda p: _edit_points(p, lambda pts: pts[0].update(score=float("inf"))), [],
                       "score must be a finite"),
    "not a rotation": (lambda p: _edit_points(p, lambda pts: pts[0]["transformation_"][0].__setitem__(0, 2.0)), [],
                       "does not hold a rotation"),
    "unknown run": (None, ["--run", "TS_9"], "no run 'TS_9'"),
    "run with dots": (None, ["--run", "../TS_1"], "no slashes"),
    "session with slash": (None, ["--session-id", "a/b"], "no slashes"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_bad_import_is_one_line_and_leaves_store(case, store_with_picks, tmp_path, capsys):
    store_path, project = _copick_project(tmp_path, capsys, store_with_picks)
    breaker, args, problem = BAD_IMPORTS[case]
    if breaker:
        breaker(project)
    before = snapshot(store_path)
    code, out, err = run_cli(capsys, "import-copick", store_path, project, "--set", "again", "--no-tomograms", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tomoflow: error: ") and problem in lines[0], err
    assert snapshot(store_path) == before
    # and no store is left behind where none was
    code, _, err = run_cli(capsys, "import-copick", tmp_path / "new_store", project, "--set", "x", *args)
    assert code == 2 and not (tmp_path / "new_store").exists(), err


BAD_EXPORTS = {
    "user id with underscore": (["--set", "my_picks", "--user-id", "a_b"], "copick names may not hold"),
    "session with dots": (["--set", "my_picks", "--session-id", "../x"], "no slashes"),
    "object with slash": (["--set", "my_picks", "--object", "a/b"], "no slashes"),
    "tomo type with slash": (["--set", "my_picks", "--tomo-type", "x/../y"], "no slashes"),
    "unknown set": (["--set", "nope"], "no particle set named 'nope'"),
    "nothing": ([], "nothing to export"),
    "picks exist": (["--set", "my_picks"], "already exists"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORTS))
def test_bad_export_is_one_line_and_changes_nothing(case, store_with_picks, tmp_path, capsys):
    store_path, project = _copick_project(tmp_path, capsys, store_with_picks)
    args, problem = BAD_EXPORTS[case]
    before, before_project = snapshot(store_path), snapshot(project)
    code, out, err = run_cli(capsys, "export-copick", store_path, project, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tomoflow: error: ") and problem in lines[0], err
    assert snapshot(store_path) == before and snapshot(project) == before_project
