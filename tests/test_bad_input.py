"""Every bad input: one line naming the file and the problem, exit status 2, store untouched."""

import json

import numpy as np
import pytest

from tomoflow.store import Store, create_particle_set, import_mrc
from conftest import run_cli, snapshot, write_mrc


@pytest.fixture
def store(tmp_path, rng):
    s = Store.create(tmp_path / "p.zarr")
    import_mrc(s, write_mrc(tmp_path / "good.mrc", rng.normal(size=(20, 24, 28)).astype(np.float32)), chunk=16)
    create_particle_set(s, "picks", {"tomogram": ["good"] * 3, "x": [1.0, 2, 3], "y": [1.0, 2, 3], "z": [1.0, 2, 3]})
    return s.path


def _bad_mrc(tmp_path, rng, case):
    p = tmp_path / f"{case}.mrc"
    v = rng.normal(size=(40, 40, 40)).astype(np.float32)
    if case == "missing":
        pass
    elif case == "not_mrc":
        p.write_text("this is a text file, not a map\n" * 100)
    elif case == "truncated":
        write_mrc(p, v)
        p.write_bytes(p.read_bytes()[: 1024 + 1000])
    elif case == "2d":
        write_mrc(p, v[:1])
    elif case in ("nan", "inf"):
        v[37, 30, 21] = np.nan if case == "nan" else np.inf  # in the last block: part is copied first
        write_mrc(p, v)
    elif case == "voxel0":
        write_mrc(p, v, voxel_size=None)  # mrcfile leaves the voxel size at 0
    return p


MRC_CASES = {
    "missing": "no such file",
    "not_mrc": "not an MRC file",
    "truncated": "truncated",
    "2d": "2D data",
    "nan": "NaN/Inf voxel at x=21 y=30 z=37",
    "inf": "NaN/Inf voxel at x=21 y=30 z=37",
    "voxel0": "voxel size is 0",
}


def _assert_one_line_error(code, err, path, problem):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tomoflow: error: ")
    assert str(path) in lines[0] and problem in lines[0], lines[0]


@pytest.mark.parametrize("case", list(MRC_CASES))
def test_import_tomogram_bad_mrc_leaves_store_as_it_was(tmp_path, rng, capsys, store, case):
    p = _bad_mrc(tmp_path, rng, case)
    before = snapshot(store)
    code, _, err = run_cli(capsys, "import-tomogram", store, p, "--chunk", "16")
    _assert_one_line_error(code, err, p, MRC_CASES[case])
    assert snapshot(store) == before


@pytest.mark.parametrize("case", list(MRC_CASES))
def test_import_tomogram_bad_mrc_creates_no_store(tmp_path, rng, capsys, case):
    p = _bad_mrc(tmp_path, rng, case)
    code, _, err = run_cli(capsys, "import-tomogram", tmp_path / "new.zarr", p, "--chunk", "16")
    _assert_one_line_error(code, err, p, MRC_CASES[case])
    assert not (tmp_path / "new.zarr").exists()


def test_voxel_size_zero_given_on_command_line(tmp_path, rng, capsys, store):
    p = write_mrc(tmp_path / "ok.mrc", rng.normal(size=(8, 8, 8)).astype(np.float32))
    before = snapshot(store)
    code, _, err = run_cli(capsys, "import-tomogram", store, p, "--voxel-size", "0")
    _assert_one_line_error(code, err, "--voxel-size", "must be > 0")  # checked at the edge, before the file
    assert snapshot(store) == before


def test_voxel_size_zero_in_header_can_be_given(tmp_path, rng, capsys, store):
    p = _bad_mrc(tmp_path, rng, "voxel0")
    code, out, _ = run_cli(capsys, "import-tomogram", store, p, "--voxel-size", "8.5", "--chunk", "16")
    assert code == 0 and "8.5 A/voxel" in out


def test_existing_tomogram_is_not_overwritten(tmp_path, rng, capsys, store):
    p = write_mrc(tmp_path / "good.mrc", rng.normal(size=(8, 8, 8)).astype(np.float32))
    before = snapshot(store)
    code, _, err = run_cli(capsys, "import-tomogram", store, p)
    _assert_one_line_error(code, err, store, "tomogram 'good' already exists")
    assert snapshot(store) == before


@pytest.mark.parametrize("argv", [
    ["export-star", "{store}", "nope", "-o", "{tmp}/x.star"],
    ["export-mrc", "{store}", "--particles", "nope", "--index", "0", "-o", "{tmp}/x.mrc"],
])
def test_unknown_particle_set(tmp_path, capsys, store, argv):
    before = snapshot(store)
    code, _, err = run_cli(capsys, *[a.format(store=store, tmp=tmp_path) for a in argv])
    _assert_one_line_error(code, err, store, "no particle set named 'nope' (have: picks)")
    assert snapshot(store) == before
    assert not list(tmp_path.glob("x.*"))


def test_unknown_tomogram_for_export(tmp_path, capsys, store):
    code, _, err = run_cli(capsys, "export-mrc", store, "--tomogram", "nope", "-o", tmp_path / "x.mrc")
    _assert_one_line_error(code, err, store, "no tomogram named 'nope' (have: good)")


STAR_HEAD = "data_particles\n\nloop_\n_rlnTomoName #1\n"
STAR_CASES = {
    "missing": (None, "no such file"),
    "garbage": ("\x00\x01 not a star file at all", "no data blocks"),
    "empty_block": ("data_particles\n\nloop_\n_rlnTomoName #1\n", "holds no particles"),
    "no_coords": (STAR_HEAD + "_rlnAngleRot #2\ngood 10\n", "no particle coordinates"),
    "nan_coord": (STAR_HEAD + "_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnCoordinateZ #4\n"
                  "good 1 2 3\ngood 1 nan 3\n", "non-finite value in rlnCoordinateX, rlnCoordinateY, "
                  "rlnCoordinateZ at particle row 2"),
    "text_coord": (STAR_HEAD + "_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnCoordinateZ #4\ngood 1 two 3\n",
                   "non-numeric values"),
    "unknown_tomo": (STAR_HEAD + "_rlnCenteredCoordinateXAngst #2\n_rlnCenteredCoordinateYAngst #3\n"
                     "_rlnCenteredCoordinateZAngst #4\nother 1 2 3\n", "tomogram 'other' is not in the store"),
}


@pytest.mark.parametrize("case", list(STAR_CASES))
def test_import_star_bad_files(tmp_path, capsys, store, case):
    text, problem = STAR_CASES[case]
    p = tmp_path / f"{case}.star"
    if text is not None:
        p.write_text(text)
    before = snapshot(store)
    code, _, err = run_cli(capsys, "import-star", store, p, "--set", "new")
    _assert_one_line_error(code, err, p, problem)
    assert snapshot(store) == before


def test_import_star_bad_file_creates_no_store(tmp_path, capsys):
    p = tmp_path / "x.star"
    p.write_text(STAR_CASES["unknown_tomo"][0])
    code, _, err = run_cli(capsys, "import-star", tmp_path / "new.zarr", p, "--set", "a")
    _assert_one_line_error(code, err, p, "is not in the store")
    assert not (tmp_path / "new.zarr").exists()


def test_store_of_another_layout_version(tmp_path, capsys, store):
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["tomoflow"]["layout"] = 99
    (store / "zarr.json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "info", store)
    _assert_one_line_error(code, err, store, "written with store layout version 99")


def test_not_a_store(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    code, _, err = run_cli(capsys, "info", tmp_path / "plain")
    _assert_one_line_error(code, err, tmp_path / "plain", "not a tomoflow store")
