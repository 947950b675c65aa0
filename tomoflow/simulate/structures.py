"""Structures for simulation: an embedded default set (no downloads), or any PDB/mmCIF file.

The embedded set (``tomoflow/data/structures.npz``) holds bead models (about one bead per
residue, weight = summed atomic number) derived from CC0 PDB entries in ``shared/structures``,
with their assembly rules applied. Regenerate it with::

    python -m tomoflow.simulate.structures ../shared/structures
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import AtomicModel
from .density import load_model

DATA = Path(__file__).resolve().parents[1] / "data" / "structures.npz"

# name -> (source file, description); ordered from large to small
EMBEDDED = {
    "6zu5": ("6zu5.cif.gz", "80S ribosome, 2.3 MDa"),
    "4v8r": ("4v8r.pdb.gz", "chaperonin CCT/TRiC, one complex, 0.85 MDa"),
    "5cvz": ("5cvz.pdb.gz", "T=1 satellite virus capsid, 60-mer, 0.84 MDa"),
    "6wg6": ("6wg6.cif.gz", "SMC1-SMC3 hinge with DNA, 265 kDa, elongated"),
    "3o21": ("3o21.cif.gz", "GluA3 N-terminal domain tetramer, 161 kDa"),
    "2nwl": ("2nwl.pdb.gz", "GltPh transporter trimer, 115 kDa"),
    "7cfn": ("7cfn.cif.gz", "GPCR-Gs-Nb35 complex, 107 kDa"),
    "4at1": ("4at1.pdb.gz", "aspartate transcarbamoylase, 95 kDa"),
    "3enl": ("3enl.pdb.gz", "enolase dimer, 43 kDa (a small blob)"),
}


@lru_cache(maxsize=1)
def _embedded_arrays() -> dict:
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def embedded_names() -> list[str]:
    return list(EMBEDDED)


def embedded_model(name: str) -> AtomicModel:
    arrays = _embedded_arrays()
    if f"{name}_xyz" not in arrays:
        raise InputError(name, f"not an embedded structure (have: {', '.join(EMBEDDED)})")
    xyz, w = arrays[f"{name}_xyz"].astype(np.float64), arrays[f"{name}_w"].astype(np.float32)
    return AtomicModel(name, xyz, w, np.full(len(w), "X"), np.full(len(w), "A"))


def resolve_structure(spec: str) -> AtomicModel:
    """An embedded structure by name, or a PDB/mmCIF file path (assembly rules applied)."""
    if spec in EMBEDDED:
        return embedded_model(spec)
    p = Path(spec)
    if p.suffix in (".gz", ".pdb", ".cif", ".ent", ".mmcif") or p.exists():
        return load_model(p)
    raise InputError(spec, f"neither an embedded structure ({', '.join(EMBEDDED)}) nor a model file")


MAP_SUFFIXES = (".mrc", ".map", ".rec")


def is_map(spec: str) -> bool:
    """A structure given as a density map (MRC) rather than an atomic model."""
    return Path(str(spec)).suffix.lower() in MAP_SUFFIXES


def check_structure(spec: str) -> None:
    """Raise a one-line input error now if ``spec`` is neither an embedded name, a model file nor a readable map."""
    if is_map(spec):
        from ..io.mrc import inspect_mrc

        inspect_mrc(spec).isotropic_voxel_size()
    else:
        resolve_structure(spec)


def structure_density(spec: str, box: int, voxel_size: float, resolution: float) -> np.ndarray:
    """A (box, box, box) float32 density of ``spec`` at ``voxel_size``: an atomic model (embedded name or PDB/mmCIF,
    :func:`tomoflow.simulate.density.density_map`) or a density map (MRC; e.g. an EMDB entry or your own average):
    resampled to ``voxel_size`` (trilinear), centred on its centre of mass (density taken as positive), cut or padded
    to ``box`` and low-pass filtered to ``resolution``."""
    from .density import density_map

    if not is_map(spec):
        return density_map(resolve_structure(spec), box, voxel_size, resolution)
    from scipy import ndimage

    from ..io.mrc import read_mrc
    from ..kernels.geometry import box_center

    data, vs = read_mrc(spec)
    data = np.asarray(data, np.float64)
    if vs <= 0:
        raise InputError(spec, "the map's header gives no voxel size")
    m = ndimage.zoom(data, vs / voxel_size, order=1) if abs(vs / voxel_size - 1) > 1e-3 else data
    w = np.clip(m - np.median(m), 0, None)  # the solvent level as zero, density positive
    com = np.array(ndimage.center_of_mass(w)) if w.sum() > 0 else (np.array(m.shape) - 1) / 2
    # output voxel o takes the map at o - c + com: the centre of mass lands on the box centre
    grid = np.indices((box,) * 3, dtype=np.float64).reshape(3, -1) - box_center(box) + com[:, None]
    out = ndimage.map_coordinates(w, grid, order=1, mode="constant", cval=0.0).reshape((box,) * 3)
    sigma = max(resolution / 2.0 / voxel_size, 0.0)
    return ndimage.gaussian_filter(out, sigma, mode="constant", truncate=4.0).astype(np.float32)


def build_embedded(shared_structures: str | Path, out: Path = DATA) -> dict:
    """Derive the embedded bead models from the CC0 files and write them to ``out``."""
    arrays, report = {}, {}
    for name, (fname, _) in EMBEDDED.items():
        model = load_model(Path(shared_structures) / fname, coarse=True)
        xyz = (model.coords - model.center_of_mass()).astype(np.float32)
        arrays[f"{name}_xyz"], arrays[f"{name}_w"] = xyz, model.weights.astype(np.float32)
        report[name] = (model.n_atoms, float(model.weights.sum()))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    _embedded_arrays.cache_clear()
    return report


if __name__ == "__main__":  # pragma: no cover
    for k, v in build_embedded(sys.argv[1] if len(sys.argv) > 1 else "../shared/structures").items():
        print(f"{k}: {v[0]} beads, total atomic number {v[1]:.0f}")
