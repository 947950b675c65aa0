"""The README's "Working with other tools" commands, run as written on a small store: they must keep working."""

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import starfile

from tomoflow.store import ParticleSet, Store
from conftest import REPO, data_file, run_cli, write_mrc


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Working with other tools", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("tomoflow ")]


def test_readme_tool_commands_run_as_written(tmp_path, capsys, monkeypatch):
    cmds = readme_commands()
    assert len(cmds) >= 7 and {c[0] for c in cmds} >= {"import-star", "export-star", "export-omezarr",
                                                       "import-tomogram", "export-copick", "import-copick"}
    monkeypatch.chdir(tmp_path)
    shutil.copy(data_file("star", "cylindra_Class3D_job_class3d_run_it025_data.star"), "run_it025_data.star")
    shutil.copy(data_file("star", "cylindra_Tomograms_job_tomo_tomograms.star"), "tomograms.star")
    g = starfile.read("tomograms.star", always_dict=True)["global"].iloc[0]  # TS_01 as RELION describes it
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(int(g.rlnTomoSizeZ), int(g.rlnTomoSizeY), int(g.rlnTomoSizeX))).astype(np.float32)
    write_mrc(tmp_path / "TS_01.mrc", vol, voxel_size=float(g.rlnTomoTiltSeriesPixelSize))
    assert run_cli(capsys, "import-tomogram", "project.zarr", "TS_01.mrc", "--tilt-range", "-60", "60")[0] == 0
    for args in cmds:
        code, out, err = run_cli(capsys, *args)
        assert code == 0, f"tomoflow {' '.join(args)}: {err}"
    store = Store.open(tmp_path / "project.zarr")
    # what the commands made is there and sane
    relion = ParticleSet(store, "relion").table_frame()
    assert len(relion) == 10 and np.isfinite(relion[["tilt_min", "tilt_max"]].to_numpy()[relion.tomogram == "TS_01"]
                                             ).all()
    assert Path("for_relion.star").is_file() and Path("for_relion_tomograms.star").is_file()
    copy = [a for a in cmds if a[0] == "import-tomogram"][0]
    name = copy[copy.index("--name") + 1]
    from tomoflow.store.tomograms import open_level

    np.testing.assert_array_equal(open_level(store, name)[:], vol)
    back = ParticleSet(store, "from_copick").table_frame()
    ts01 = relion[relion.tomogram == "TS_01"]
    np.testing.assert_allclose(np.sort(back.x.to_numpy()), np.sort(ts01.x.to_numpy()), atol=1e-6)
