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


def offline_options(argv: list[str]) -> list[str]:
    """``argv`` plus ``--browser.serverAddress`` when it is not given: start-up stays offline.

    A headless Streamlit server bound to every interface asks an outside service (checkip.amazonaws.com) for its
    public IP to print an "External URL" ("Did not auto detect external IP" on a classroom network without
    internet). With ``browser.serverAddress`` set it prints that one address instead and asks nobody. The address
    is ``--server.address`` when that names one interface, else this machine's LAN address, found by the
    operating system's routing table (a UDP socket that connects but sends nothing).
    """
    if any(arg.startswith("--browser.serverAddress") for arg in argv):
        return argv
    address = None
    for k, arg in enumerate(argv):
        if arg.startswith("--server.address"):
            address = arg.split("=", 1)[1] if "=" in arg else (argv[k + 1] if k + 1 < len(argv) else None)
    if not address or address in ("0.0.0.0", "::"):  # every interface: students connect over the LAN
        from streamlit import net_util

        address = net_util.get_internal_ip() or "localhost"
    return [*argv, "--browser.serverAddress", address]


def main(argv: list[str]) -> int:
    """Warm up, then hand over to Streamlit's own command line (``streamlit run app.py ARGV``)."""
    sys.path.insert(0, str(ROOT))  # app_ui.py, as `streamlit run` would put it on the path
    from streamlit.web import cli

    import app_ui

    app_ui.warm_up()
    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *offline_options(argv)]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
