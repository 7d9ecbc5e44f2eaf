"""Start the explorer warm: ``python serve.py [streamlit options]`` is ``streamlit run app.py`` after a warm-up.

The warm-up (:func:`app_ui.warm_up`) imports torch, pymatgen and the pages' modules and loads the default dataset
and model in this process before the server answers, so the first of a class's sessions does not spend ~10 s
importing while the others queue behind it. ``make run`` and the test/bench server use this; plain
``streamlit run app.py`` still works, only colder.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Warm up, then hand over to Streamlit's own command line (``streamlit run app.py ARGV``)."""
    sys.path.insert(0, str(ROOT))  # app_ui.py, as `streamlit run` would put it on the path
    from streamlit.web import cli

    import app_ui

    app_ui.warm_up()
    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *argv]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
