"""The one module that owns the Zarr layout of a tomoflow project (see :mod:`.core`)."""

from .core import LAYOUT_VERSION, Store, check_name
from .particles import ANSWER_KEY, COLUMNS, SPLITS, TRUE_POSE, ParticleSet, build_table, create_particle_set
from .stages import StageRecord
from .tomograms import (TomogramInfo, TomogramWriter, block_regions, export_mrc, import_mrc, open_level,
                        tomogram_info)

__all__ = [
    "LAYOUT_VERSION", "Store", "check_name", "ANSWER_KEY", "COLUMNS", "SPLITS", "TRUE_POSE", "ParticleSet", "build_table",
    "create_particle_set", "StageRecord", "TomogramInfo", "TomogramWriter", "export_mrc", "import_mrc",
    "open_level", "tomogram_info", "block_regions",
]
