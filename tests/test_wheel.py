"""The wheel that ``pip install`` builds carries every file the package reads at run time."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from pathosam_wsi.model import learned

ROOT = Path(__file__).resolve().parents[1]
hatchling_wheel = pytest.importorskip("hatchling.builders.wheel")


@pytest.fixture(scope="module")
def wheel_members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wheel")
    path = next(
        hatchling_wheel.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    )
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_wheel_ships_the_learned_weights_with_their_hash(wheel_members: dict[str, bytes]) -> None:
    member = "pathosam_wsi/model/data/learned_unet.pt"
    assert member in set(wheel_members)
    assert hashlib.sha256(wheel_members[member]).hexdigest() == learned.LEARNED_SHA256


def test_wheel_ships_every_tracked_package_file(wheel_members: dict[str, bytes]) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "pathosam_wsi"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    files = [f for f in tracked.stdout.split() if "__pycache__" not in f]
    missing = [f for f in files if f not in wheel_members]
    assert not missing
    entry = [n for n in wheel_members if n.endswith("entry_points.txt")]
    assert entry and b"pathosam-wsi = pathosam_wsi.cli:main" in wheel_members[entry[0]]
