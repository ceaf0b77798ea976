"""The package as a user installs it: from a clean virtual environment, with
a plain `pip install .` and from a wheel built by `python -m build`.

Slow (a new venv, its dependencies, and the first compile of the numba core
in it: a few minutes), so marked `slow`; CI runs it.
"""
from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def sh(*argv, cwd=None, timeout=900):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO)
    wheels = list(out.glob("tilegrid-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_holds_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"tilegrid"}, tops
    for needed in ("tilegrid/compiler/grammar.lark", "tilegrid/kernels/matmul.tg",
                   "tilegrid/kernels/transformer_block.tg", "tilegrid/emulator/core.py",
                   "tilegrid/compiler/passes/emit_code.py", "tilegrid/__main__.py"):
        assert needed in names, needed
    bundled = {Path(n).name for n in names if n.startswith("tilegrid/kernels/") and n.endswith(".tg")}
    assert bundled == {p.name for p in (REPO / "kernels").glob("*.tg")}
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_plain_install_in_a_clean_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", REPO)  # plain `pip install .`, not editable
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    record = next(site.glob("tilegrid-*.dist-info")) / "RECORD"
    installed = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines() if line}
    installed = {t for t in installed if not t.endswith(".dist-info") and t != ".."}
    assert installed == {"tilegrid"}, installed  # no compiler/, emulator/ or kernels/ of its own
    for shadowed in ("compiler", "emulator", "kernels"):
        assert not (site / shadowed).exists()
    # Run from elsewhere, so nothing can come from the checkout.
    work = tmp_path / "elsewhere"
    work.mkdir()
    listing = sh(py, "-m", "tilegrid", "kernels", cwd=work)
    assert "matmul" in listing and str(site) in listing
    demo = sh(env_dir / "bin" / "tilegrid", "demo", "--grid", "2x2", "--size", "32", cwd=work)
    assert "bit-exact: C matches the ordered reference in all 1024 values" in demo
    proc = subprocess.run([py, "-m", "tilegrid", "run", "nope"], capture_output=True, text=True, cwd=work)
    assert proc.returncode == 2 and proc.stderr.startswith("tilegrid: error:")
