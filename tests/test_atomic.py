"""PDB/mmCIF models to coordinates and element weights (real CC0 models vendored in tests/data)."""

import numpy as np
import pytest

from tomoflow.errors import InputError
from tomoflow.io.atomic import read_atomic_model
from conftest import data_file


def test_pdb_gz_weights_are_atomic_numbers():
    m = read_atomic_model(data_file("structures", "1ubi.pdb.gz"))
    assert m.n_atoms == 602  # ubiquitin, waters removed
    z = dict(zip(m.elements, m.weights))
    assert (z["C"], z["N"], z["O"], z["S"]) == (6, 7, 8, 16)
    assert m.coords.shape == (m.n_atoms, 3)
    # centre of mass lies within the molecule's bounding box
    assert np.all(m.center_of_mass() > m.coords.min(0)) and np.all(m.center_of_mass() < m.coords.max(0))


def test_waters_removed_by_default():
    with_water = read_atomic_model(data_file("structures", "1ubi.pdb.gz"), remove_waters=False)
    without = read_atomic_model(data_file("structures", "1ubi.pdb.gz"))
    assert with_water.n_atoms - without.n_atoms == 81  # the 81 HOH records of 1UBI


def test_mmcif_gz():
    m = read_atomic_model(data_file("structures", "1gbt.cif.gz"))
    assert m.n_atoms > 1500 and set(m.elements) >= {"C", "N", "O"}


def test_chain_predicate_selects_one_chaperonin_complex():
    path = data_file("structures", "4v8r.pdb.gz")
    whole = read_atomic_model(path)
    one = read_atomic_model(path, chains=lambda c: c.startswith("A"))
    assert set(np.unique(one.chains)) == {c for c in np.unique(whole.chains) if c.startswith("A")}
    assert 0.4 < one.n_atoms / whole.n_atoms < 0.6  # two complexes in the file


def test_drop_membrane_dummy_residues():
    path = data_file("structures", "2nwl.pdb.gz")
    whole = read_atomic_model(path, remove_waters=False)
    kept = read_atomic_model(path, drop_residues={"DUM"}, remove_waters=False)
    assert whole.n_atoms - kept.n_atoms == 4002  # the DUM records of 2NWL


def test_bad_model_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_atomic_model(tmp_path / "none.pdb")
    p = tmp_path / "junk.cif"
    p.write_text("data_x\n_cell.length_a 10\n")
    with pytest.raises(InputError, match=str(p)):
        read_atomic_model(p)
