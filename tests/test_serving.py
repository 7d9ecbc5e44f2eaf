"""How the app is served to a class: settings that the load bench showed matter (bench/load_app.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_forced_garbage_collection_after_each_script_run():
    # Streamlit's default runs gc.collect(2) after every script run: with torch, pymatgen and the dataset loaded
    # that was ~0.4 s of the GIL per rerun, and 30 sessions queued behind it (p95 18 s -> 2.3 s without it).
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_make_run_and_the_test_server_start_warm():
    assert "serve.py" in (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert '"serve.py"' in (ROOT / "devtools" / "app_server.py").read_text()
