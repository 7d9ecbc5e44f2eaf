"""Start the explorer warm: ``python serve.py [streamlit options]`` is ``streamlit run app.py`` after a warm-up.

The warm-up (:func:`app_ui.warm_up`) imports torch, pymatgen and the pages' modules and loads the default dataset
and model in this process before the server answers, so the first of a class's sessions does not spend ~10 s
importing while the others queue behind it. ``make run`` and the test/bench server use this; plain
``streamlit run app.py`` still works, only colder.

Before anything else it refuses to start with a teacher password or class code shorter than
``CGCNN_MIN_PASSWORD_LENGTH`` (a short secret is guessed in a minute over the network), with a message that
says which and how to fix it; the pages then keep teacher mode off for such a password anyway.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def secrets_password() -> str | None:
    """``teacher_password`` from the secrets files Streamlit reads (the project's, then the user's), or None."""
    import tomllib

    for path in (ROOT / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"):
        try:
            value = tomllib.loads(path.read_text()).get("teacher_password")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if value:
            return str(value)
    return None


def weak_secrets() -> list[str]:
    """Why this server must not start: a teacher password or class code shorter than the minimum."""
    from cgcnn.app import identity, teacher

    problems = [teacher.password_problem(secrets_password())]
    problems.append(teacher.secret_problem(identity.class_code(), "class code", identity.CLASS_CODE_ENV))
    return [p for p in problems if p]


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
    """Check the secrets, warm up, then hand over to Streamlit's own command line (``streamlit run app.py ARGV``)."""
    sys.path.insert(0, str(ROOT))  # app_ui.py, as `streamlit run` would put it on the path
    problems = weak_secrets()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    from streamlit.web import cli

    import app_ui

    app_ui.warm_up()
    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *offline_options(argv)]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
