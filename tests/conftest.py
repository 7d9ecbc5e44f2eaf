from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pymatgen.core import Structure

DATA = Path(__file__).parent / "data"
CIF_DIR = DATA / "cifs"
TIED = {"mp-20679", "mp-841", "mp-259"}  # a tie at the 12-neighbour cut (see tests/data/README.md)


def read(mp_id: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(CIF_DIR / f"{mp_id}.cif")


@pytest.fixture
def store(tmp_path: Path):
    """An empty run store of its own for one test."""
    from cgcnn.runs.store import RunStore

    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture(scope="session")
def cif_dir() -> Path:
    return CIF_DIR


@pytest.fixture(scope="session")
def all_ids() -> list[str]:
    return sorted(p.stem for p in CIF_DIR.glob("*.cif"))


@pytest.fixture(scope="session")
def untied_ids(all_ids) -> list[str]:
    return [i for i in all_ids if i not in TIED]


@pytest.fixture(autouse=True, scope="session")
def isolated_home(tmp_path_factory):
    """Run store and graph cache of the test session live in a temporary folder, never the user's."""
    import os

    home = tmp_path_factory.mktemp("cgcnn_home")
    old = os.environ.get("CGCNN_HOME")
    os.environ["CGCNN_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CGCNN_HOME", None)
    else:
        os.environ["CGCNN_HOME"] = old
