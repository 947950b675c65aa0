"""Store integrity under hostile names and failures (issue 19): a name never reaches outside its store, and a
failed command never deletes work that is already in the store. Each probe runs on stores whose every file is
hashed before and after."""

from __future__ import annotations

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
