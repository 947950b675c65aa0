"""Importing and exporting a 1 GiB MRC tomogram stays under 500 MB peak RSS (measured in a subprocess)."""

import hashlib
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from tomoflow.io.mrc import MrcBlockWriter
from tomoflow.store import Store, open_level
from tomoflow.store.tomograms import bin2

SHAPE = (256, 1024, 1024)  # 1 GiB of float32
LIMIT_MB = 500
# A fresh parent runs the command and reports the peak RSS of its only child, in MB.
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")


def _peak_rss_mb(*argv) -> float:
    r = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "tomoflow", *map(str, argv)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


def _data_hash(path, offset=1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(64 << 20):
            h.update(block)
    return h.hexdigest()


@pytest.mark.slow
def test_import_and_export_of_1gib_tomogram_stay_under_500mb(tmp_path):
    src = tmp_path / "big.mrc"
    rng = np.random.default_rng(0)
    with MrcBlockWriter(src, SHAPE, np.float32, 9.2) as w:
        for z0 in range(0, SHAPE[0], 16):
            w.write(slice(z0, z0 + 16), slice(None), slice(None),
                    rng.standard_normal((16,) + SHAPE[1:], dtype=np.float32))
    assert src.stat().st_size >= 1 << 30

    peak_import = _peak_rss_mb("import-tomogram", tmp_path / "s.zarr", src)
    assert peak_import < LIMIT_MB, f"import peaked at {peak_import:.0f} MB"

    store = Store.open(tmp_path / "s.zarr", mode="r")
    l0, l1 = open_level(store, "big", 0), open_level(store, "big", 1)
    with mrcfile.mmap(src, mode="r") as m:  # spot checks against the source
        for z, y, x in [(0, 0, 0), (128, 896, 384), (192, 512, 896)]:
            ref = np.asarray(m.data[z:z + 64, y:y + 128, x:x + 128])
            assert np.array_equal(l0[z:z + 64, y:y + 128, x:x + 128], ref)
            np.testing.assert_allclose(l1[z // 2:z // 2 + 32, y // 2:y // 2 + 64, x // 2:x // 2 + 64], bin2(ref),
                                       atol=1e-5)

    peak_export = _peak_rss_mb("export-mrc", tmp_path / "s.zarr", "--tomogram", "big", "-o", tmp_path / "back.mrc")
    assert peak_export < LIMIT_MB, f"export peaked at {peak_export:.0f} MB"
    assert _data_hash(tmp_path / "back.mrc") == _data_hash(src)
