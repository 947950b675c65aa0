"""Templates and true maps: a structure's density filtered by the microscope's CTF and MTF."""

from __future__ import annotations

import numpy as np
from scipy import fft


def structure_template(spec: str, voxel_size: float, box: int, *, microscope=None, detector_voxel: float | None = None,
                       resolution: float | None = None) -> np.ndarray:
    """A template from an embedded structure or model file at ``voxel_size``, filtered by the CTF and
    MTF of ``microscope`` (seed 000 defaults; False: unfiltered) so it has the tomogram's contrast.
    ``detector_voxel``: the unbinned voxel size the MTF refers to (default ``voxel_size``)."""
    from .optics import Microscope, transfer
    from .structures import structure_density

    dens = structure_density(spec, box, voxel_size, resolution or voxel_size)
    if microscope is False:
        return dens
    mic = microscope or Microscope()
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*[fft.fftfreq(box)] * 3, indexing="ij"))) / voxel_size
    return fft.ifftn(fft.fftn(dens) * transfer(k, mic, detector_voxel or voxel_size)).real.astype(np.float32)
