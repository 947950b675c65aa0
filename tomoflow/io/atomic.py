"""PDB and mmCIF atomic models (gzip or plain) to coordinates and element weights, via gemmi."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class AtomicModel:
    """Atoms of one model: ``coords`` (n, 3) as (x, y, z) in Å, ``weights`` (n,) atomic numbers."""

    name: str
    coords: np.ndarray
    weights: np.ndarray
    elements: np.ndarray  # element symbols, (n,)
    chains: np.ndarray  # chain ID of each atom, (n,)

    @property
    def n_atoms(self) -> int:
        return len(self.weights)

    def center_of_mass(self) -> np.ndarray:
        """Weighted by atomic number, as the density maps are."""
        return (self.coords * self.weights[:, None]).sum(0) / self.weights.sum()

    def select(self, mask: np.ndarray) -> "AtomicModel":
        mask = np.asarray(mask, bool)
        return AtomicModel(self.name, self.coords[mask], self.weights[mask], self.elements[mask], self.chains[mask])


def read_atomic_model(
    path: str | os.PathLike,
    *,
    model_index: int = 0,
    chains: Callable[[str], bool] | Iterable[str] | None = None,
    drop_residues: Iterable[str] = (),
    remove_waters: bool = True,
    remove_hydrogens: bool = False,
) -> AtomicModel:
    """Read a PDB/mmCIF file (``.gz`` accepted).

    ``chains``: a predicate on the chain ID (e.g. ``lambda c: c.startswith("A")``) or a collection
    of IDs to keep; ``drop_residues``: residue names to leave out (e.g. ``{"DUM"}`` for membrane
    dummy atoms); waters are dropped by default.
    """
    import gemmi

    path = os.fspath(path)
    if not Path(path).is_file():
        raise InputError(path, "no such file")
    try:
        st = gemmi.read_structure(path)
    except Exception as exc:
        st = _read_pdb_ignoring_charges(path) if "charge" in str(exc) else None
        if st is None:
            raise InputError(path, f"not a readable PDB/mmCIF model ({exc})") from None
    if len(st) == 0:
        raise InputError(path, "the file holds no model")
    if not 0 <= model_index < len(st):
        raise InputError(path, f"model {model_index} requested, the file holds {len(st)}")
    if remove_waters:
        st.remove_waters()
    if remove_hydrogens:
        st.remove_hydrogens()
    if chains is not None and not callable(chains):
        keep = set(chains)
        chains = keep.__contains__
    drop = {r.upper() for r in drop_residues}

    xyz, z, el, ch = [], [], [], []
    for chain in st[model_index]:
        if chains is not None and not chains(chain.name):
            continue
        for res in chain:
            if res.name.upper() in drop:
                continue
            for atom in res:
                p = atom.pos
                xyz.append((p.x, p.y, p.z))
                z.append(atom.element.atomic_number)
                el.append(atom.element.name)
                ch.append(chain.name)
    if not xyz:
        raise InputError(path, "no atoms left after selection")
    weights = np.asarray(z, dtype=np.float32)
    if (weights <= 0).any():
        # unknown elements (X): count them as carbon rather than as nothing
        weights[weights <= 0] = 6.0
    name = Path(path).name.split(".")[0]
    return AtomicModel(name, np.asarray(xyz, dtype=np.float64), weights, np.asarray(el), np.asarray(ch))


def _read_pdb_ignoring_charges(path: str):
    """Some PDB files carry malformed charge columns (79-80); blank them and parse again."""
    import gzip

    import gemmi

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", errors="replace") as f:
            lines = [ln[:78].rstrip("\n") if ln.startswith(("ATOM", "HETATM")) else ln.rstrip("\n") for ln in f]
        return gemmi.read_pdb_string("\n".join(lines) + "\n")
    except Exception:
        return None
