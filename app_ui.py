"""Streamlit glue shared by the pages: page set-up, the display name, cached resources, the error boundary.

Only Streamlit-specific code lives here (caching decorators, widgets used on every page); computations are in
``cgcnn.app.launch`` and ``cgcnn.analysis.figures`` and ``cgcnn.analysis.crystal_scene``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from cgcnn.app import plain
from cgcnn.errors import CGCNNError

# No page icons: a ":material/...:" icon becomes the tab icon, fetched from a font CDN, and no request may leave the
# server (a classroom may have no internet, and students' browsers must not be tracked); emoji show as boxes where
# the OS has no emoji font. The tab icon is a local file (FAVICON).
PAGES = {
    "app.py": "Home",
    "app_pages/1_Model_zoo.py": "Model zoo",
    "app_pages/2_Fine_tune.py": "Fine-tune",
    "app_pages/3_Compare_runs.py": "Compare runs",
    "app_pages/4_Crystal_viewer.py": "Crystal & attention viewer",
    "app_pages/5_Representations.py": "Representations",
    "app_pages/6_Predict.py": "Predict",
    "app_pages/7_Class.py": "Class (lesson, teacher)",
}
URL_PATHS = {path: path.split("/")[-1][2:-3] for path in PAGES if path.startswith("app_pages/")}
VIEWER_PAGE = "app_pages/4_Crystal_viewer.py"
FAVICON = str(Path(__file__).resolve().parent / "static" / "favicon.png")


def setup(title: str) -> str:
    """Page config, title and the sidebar sign-in; returns the signed-in display name ('' if none yet).

    The browser's secret token (issued by this server, see :mod:`cgcnn.app.identity`) and its display name live
    in cookies, so a reload keeps them, and in the session, so switching pages keeps them; never in the page
    address, so a link a student copies or shares carries only what the page shows. The token proves the name:
    a classmate typing it gets an error.
    """
    from cgcnn.app import identity as ident

    st.set_page_config(page_title=f"{title} · CGCNN explorer", page_icon=FAVICON, layout="wide")
    token = _browser_token()
    mark_active()
    wanted = (
        st.session_state.get("user")
        or st.query_params.get("user")
        or ident.name_of_token(store(), token)  # a returning browser: its token holds its name
        or cookie(USER_COOKIE)
        or ""
    ).strip()
    if "user" in st.query_params:  # a name in an old link only pre-fills the box; the address keeps no sign-in
        del st.query_params["user"]
    me = ident.Identity()
    with st.sidebar:
        typed = st.text_input(
            "Your display name",
            value=wanted,
            key="user_input",
            max_chars=40,
            help="Letters, digits, spaces and - _ . (at most 40). Kept in this browser with a secret token "
            "(a cookie, never the page address): a reload keeps it, and only this browser can change your runs.",
        ).strip()
        if typed:
            try:
                me = ident.sign_in(store(), typed, token, st.session_state.get("class_code", ""), _guard_keys())
            except ident.ClassCodeRequired as exc:
                if st.session_state.get("class_code"):
                    st.session_state["class_code"] = ""  # counted once: a rerun must not count it again
                st.text_input("Class code", type="password", key="class_code")
                st.warning(plain.markdown(str(exc)))
            except CGCNNError as exc:
                st.error(plain.markdown(str(exc)))
        st.session_state["user"] = me.name
        st.session_state["identity"] = me
        st.caption("Runs you launch are recorded under this name." if me.name else "Enter a name to launch runs.")
        _presentation_toggle()
        _remember_sign_in(token, me.name)
    st.title(title)
    return me.name


#: Cookies holding the browser's sign-in token, its display name and the teacher's mode.
TOKEN_COOKIE, USER_COOKIE, TEACHER_COOKIE = "cgcnn_token", "cgcnn_user", "cgcnn_teacher"


def cookie(name: str) -> str | None:
    """A cookie the browser sent when it opened this session (``st.context.cookies``), or None."""
    try:
        value = st.context.cookies.get(name)
    except Exception:  # no browser behind the session (AppTest, bare mode)
        return None
    return value if isinstance(value, str) else None  # AppTest's context gives a stand-in object


def _browser_token() -> str:
    """This browser's sign-in token, checked (made-up or expired ones are skipped).

    The first valid of: a server-issued one from the address (taken out of it at once: an old bookmark or a
    test), the session's, the cookie's; else a new one.
    """
    from cgcnn.app import identity as ident

    home = store().home
    from_address = st.query_params.get("token")
    if "token" in st.query_params:
        del st.query_params["token"]
    for candidate in (from_address, st.session_state.get("token"), cookie(TOKEN_COOKIE)):
        if candidate and ident.valid_token(candidate, home):
            token = candidate
            break
    else:
        token = ident.new_token(home)
    st.session_state["token"] = token
    return token


def set_cookie(name: str, value: str, hours: float, key: str) -> None:
    """Write a cookie in this browser (path ``/``, same-site strict), through a maintained component.

    ``extra-streamlit-components``' CookieManager sets it from its (offline, bundled) frontend; ``hours`` 0
    deletes it. Rendered on every run with the same arguments, so it writes once per change.
    """
    import datetime

    import extra_streamlit_components as stx

    manager = stx.CookieManager(key=f"{key}_read")
    if hours > 0:
        manager.set(name, value, key=key, max_age=hours * 3600, same_site="strict")
    else:  # emptied and expired at once (the component's delete needs the cookie read back first)
        manager.set(name, "", key=key, expires_at=datetime.datetime(2000, 1, 1), same_site="strict")


def _remember_sign_in(token: str, name: str) -> None:
    """Keep the token (and the name, once signed in) in cookies for a reload, when they differ from the sent ones."""
    from cgcnn.settings import current_limits

    hours = current_limits().sign_in_hours or 24 * 365
    if cookie(TOKEN_COOKIE) != token or (name and cookie(USER_COOKIE) != name):
        set_cookie(TOKEN_COOKIE, token, hours, key="cookie_token")
        if name:
            set_cookie(USER_COOKIE, name, hours, key="cookie_user")


def _presentation_toggle() -> None:
    """The sidebar's presentation-mode switch, kept in the URL as ``?present=1`` so a projector link opens in it."""
    wanted = st.query_params.get("present") == "1" or bool(st.session_state.get("present", False))
    on = st.toggle(
        "Presentation mode",
        value=wanted,
        key="present_toggle",
        help="Larger text in tables, heatmaps and diagrams, the 3D view zoomed to fit and fixed colour ranges: "
        "for a projector. Kept in the page address (?present=1).",
    )
    st.session_state["present"] = on
    if on and st.query_params.get("present") != "1":
        st.query_params["present"] = "1"
    elif not on and "present" in st.query_params:
        del st.query_params["present"]


def presenting() -> bool:
    """Whether presentation mode is on (set by :func:`setup` from the sidebar toggle or ``?present=1``)."""
    return bool(st.session_state.get("present", False))


def style():
    """The :class:`~cgcnn.analysis.style.DisplayStyle` of this session (projector sizes in presentation mode)."""
    from cgcnn.analysis.style import display_style

    return display_style(presenting())


def chart(fig, key: str | None = None, container=None, **kwargs):
    """``st.plotly_chart`` at full width with this session's font sizes (see :func:`style`)."""
    from cgcnn.analysis.style import style_figure

    return (container or st).plotly_chart(style_figure(fig, style()), width="stretch", key=key, **kwargs)


def table(frame, container=None, **kwargs) -> None:
    """A table: an interactive grid on a screen, a static table with large text in presentation mode.

    The static table wraps instead of scrolling columns off-screen; long tables stay a grid.
    """
    from cgcnn.analysis.style import styled_table

    where = container or st
    look = style()
    if look.presenting and len(frame) <= look.max_styled_rows:
        where.table(styled_table(frame, look, text=plain.markdown))  # cells render as Markdown
    else:
        where.dataframe(frame, hide_index=True, width="stretch", **kwargs)


#: Run lists longer than this scroll inside a box of their own (a class has a hundred runs).
RUNS_TABLE_ROWS = 10


def runs_table(frame, height: int | None = None, container=None) -> None:
    """A live list of runs (:func:`cgcnn.app.tables.compact_frame`) as a static table whose cells wrap.

    A grid cannot wrap: at 1280-1400 px it scrolled *state* and *test MAE* off to the right. The narrow table
    (:func:`cgcnn.app.tables.narrow_runs`) fits, with progress as a percentage, at 14 px on a screen and 16 px
    in presentation mode; a long list scrolls vertically inside a box ``height`` px high.
    """
    from cgcnn.analysis.style import styled_table
    from cgcnn.app.tables import narrow_runs

    where = container or st
    if height is not None and len(frame) > RUNS_TABLE_ROWS:
        where = where.container(height=height, border=False)
    where.table(styled_table(narrow_runs(frame), style(), text=plain.markdown))


def identity():
    """This session's :class:`~cgcnn.app.identity.Identity` (set by :func:`setup`)."""
    from cgcnn.app.identity import Identity

    return st.session_state.get("identity") or Identity()


def is_teacher() -> bool:
    """Whether this session is in teacher mode: unlocked less than ``CGCNN_TEACHER_HOURS`` ago.

    A reload keeps it through the teacher cookie (no secret in the address).
    """
    from cgcnn.app import teacher

    since = st.session_state.get("teacher_since")
    if since is None and not st.session_state.get("teacher_left"):  # a reload: the cookie, if still valid
        since = teacher.restored_since(cookie(TEACHER_COOKIE), store().home, teacher_secret())
        if since is not None:
            st.session_state["teacher_since"] = since
    if since is not None and teacher.active(since):
        return True
    st.session_state.pop("teacher_since", None)
    return False


def enter_teacher_mode(typed: str) -> str | None:
    """Try the teacher password (lockout and log: :mod:`cgcnn.app.guard`); None on success, else the refusal."""
    from cgcnn.app import teacher

    outcome = teacher.unlock(typed, teacher_secret(), _guard_keys(), store().home)
    if outcome.token:
        st.session_state["teacher_since"] = outcome.since
        st.session_state["teacher_left"] = False
        st.session_state["teacher_cookie"] = outcome.token
        return None
    return outcome.message


def leave_teacher_mode() -> None:
    """End teacher mode in this session and drop the teacher cookie."""
    st.session_state.pop("teacher_since", None)
    st.session_state["teacher_left"] = True
    st.session_state.pop("teacher_cookie", None)


def teacher_cookie() -> None:
    """Write (or delete) the teacher cookie to match this session's mode; call once per Class page run."""
    from cgcnn.settings import current_limits

    value = st.session_state.get("teacher_cookie")
    if value and is_teacher():
        set_cookie(TEACHER_COOKIE, value, current_limits().teacher_hours or 2.0, key="cookie_teacher")
    elif st.session_state.get("teacher_left") and cookie(TEACHER_COOKIE):
        set_cookie(TEACHER_COOKIE, "", 0, key="cookie_teacher")


def _guard_keys() -> list[str]:
    """Who a wrong password counts against: this session, and its client address where Streamlit gives one."""
    keys = [f"session:{st.session_state.setdefault('guard_id', __import__('secrets').token_hex(8))}"]
    try:
        address = st.context.ip_address
    except Exception:
        address = None
    if address:
        keys.append(f"address:{address}")
    return keys


def link_params() -> dict[str, str]:
    """Query parameters links between pages carry: only the view (presentation mode); never the sign-in."""
    return {"present": "1"} if presenting() else {}


def page_links() -> None:
    """Links to every page (the sign-in stays in the session and its cookies)."""
    params = link_params() or None
    cols = st.columns(3)
    for k, (path, label) in enumerate(list(PAGES.items())[1:]):
        with cols[k % 3]:
            st.page_link(path, label=label, query_params=params)


def teacher_secret() -> str | None:
    """``teacher_password`` from Streamlit secrets, or None (no secrets file, or no such key)."""
    from cgcnn.app.teacher import SECRET_KEY

    try:
        value = st.secrets.get(SECRET_KEY)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None
    return str(value) if value else None


@contextlib.contextmanager
def boundary(what: str = "this page") -> Iterator[None]:
    """Show user errors as ``st.error`` and anything unexpected as a short message, never a traceback."""
    try:
        yield
    except CGCNNError as exc:
        st.error(plain.markdown(str(exc)))
    except Exception as exc:  # the page boundary: Streamlit's own control flow is BaseException, not caught
        import logging

        logging.getLogger("cgcnn.app").exception("unexpected error on %s", what)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        st.error(plain.markdown(f"Something went wrong on {what}: {type(exc).__name__}{': ' + first if first else ''}"))


# --------------------------------------------------------------------------------------------------- caches


@st.cache_resource(show_spinner="Loading the default dataset…")
def dataset():
    """The embedded default dataset (shared by every session)."""
    from cgcnn.data.datasets import load_default_dataset

    return load_default_dataset()


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def model(name: str, stamp: float = 0.0):
    """A zoo model (or shipped ensemble) by name (``stamp`` lets callers refresh a saved run's entry)."""
    from cgcnn.zoo import load_model_or_ensemble

    return load_model_or_ensemble(name)


@st.cache_resource
def store():
    """The run store (holds only a path; safe to share)."""
    from cgcnn.app.classroom import run_store

    return run_store()


@st.cache_resource
def active_sessions():
    """Sessions seen lately on this server (one registry per process): polling views slow down as they grow."""
    from cgcnn.app.polling import ActiveSessions

    return ActiveSessions()


def mark_active() -> None:
    """Count this session as active (a page run or a poll): see :mod:`cgcnn.app.polling`."""
    active_sessions().seen(st.session_state.get("token", ""))


def poll_seconds() -> float:
    """Interval for a polling fragment now (:mod:`cgcnn.app.polling`); :func:`setup` counted this session."""
    return active_sessions().poll_seconds()


@st.cache_data(ttl=10, show_spinner=False)
def model_choices(include_ensembles: bool = False) -> list[str]:
    """The zoo's model names (refreshed every 10 s: saving a run adds one); ensembles where a page predicts.

    A shipped ensemble is offered where it predicts (the viewer), never to fine-tune.
    """
    from cgcnn.app.tables import model_choices as names

    return names(store(), include_ensembles=include_ensembles)


@st.cache_data(ttl=10, show_spinner=False)
def cards():
    """The zoo's model cards as a table, shared by every session for 10 s (saving a run adds one)."""
    from cgcnn.app.tables import cards_frame

    return cards_frame(store())


def zoo_changed() -> None:
    """Drop the shared model lists at once after a run is saved under a name (else they refresh within 10 s)."""
    cards.clear()
    model_choices.clear()


@st.cache_data(ttl=3, show_spinner=False)
def queue_etas(run_ids: tuple[str, ...], workers: int) -> dict:
    """Queue estimates of queued runs, shared by every session for 3 s (each one simulates the whole queue)."""
    from cgcnn.app.tables import queue_etas as estimate

    return estimate(store(), list(run_ids), workers=workers)


@st.cache_resource(max_entries=64, show_spinner=False)
def done_run_figures(run_id: str, units: str, finished_at: float):
    """Curves and parity plot of a finished run (it never changes: cached by id and finish time).

    ``cache_resource``, not ``cache_data``: a cached plotly figure is handed out as is, while unpickling a
    copy re-validates every property (about 0.1 s per figure, each rerun).
    """
    from cgcnn.analysis import figures

    s = store()
    return figures.curves_figure(s.epochs(run_id), "mae", units=units), figures.parity_figure(
        s.predictions(run_id, "test"), units
    )


# --------------------------------------------------------------------------------------------------- warm start


def warm_up() -> None:
    """Import and load, once, what every page needs, before the server takes its first session (``serve.py``).

    A cold Streamlit process pays for its imports (torch, pymatgen, plotly, pandas: about 8–13 s on 2 cores) inside
    the first session's first page, while every other session queues behind it. Done here, ahead of time, the first
    student's page costs what any other page does. Only ``cache_resource`` entries are filled (they are
    process-wide); ``cache_data`` needs the running server. Then ``gc.freeze()`` moves these long-lived objects out
    of the collector's reach, so Python's automatic full collections stay short while sessions run.
    """
    import gc

    from cgcnn.analysis import crystal_scene, figures
    from cgcnn.app import tables, viewer
    from cgcnn.data.datasets import TARGET_UNITS
    from cgcnn.data.graph import GraphParams, structure_to_graph

    data = dataset()
    structure = data.structure(str(data.ids[0]))
    crystal_scene.crystal_scene_html(structure, structure_to_graph(structure, GraphParams()))
    figures.histograms_figure(data.labels, TARGET_UNITS)
    tables.cards_frame(store())
    model("formation-energy-per-atom")  # the Fine-tune page's default choice
    model(viewer.PREFERRED_MODELS[0])  # the viewer's first view
    gc.collect()
    gc.freeze()
