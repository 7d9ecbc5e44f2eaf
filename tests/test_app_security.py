"""Issue 13 through the real pages (AppTest): hostile stored names render as text; runs belong to a token."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from cgcnn.runs.store import RunStore
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

MARK = "EVIL"
HOSTILE = {
    "link": f"[{MARK} click](http://evil.example/x)",
    "image": f"![{MARK}](http://evil.example/beacon.png)",
    "html": f'<span style="color:red">{MARK}</span>',
    "directive": f":red[{MARK} SERVER WILL SHUT DOWN]",
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home (the pages' cached store is cleared so they open it)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    st.cache_resource.clear()
    yield tmp_path
    st.cache_resource.clear()


def open_page(path: str, user: str | None = None, browser: str = "a") -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.query_params["token"] = token_of(browser)
    if user:
        at.query_params["user"] = user
    return at.run()


def rendered_texts(at: AppTest) -> list[str]:
    """Every Markdown-rendering element's source (markdown, captions, alerts, titles, headers)."""
    kinds = ("markdown", "caption", "error", "warning", "success", "info", "title", "subheader", "header")
    return [str(e.value) for kind in kinds for e in at.get(kind)]


def assert_inert(texts: list[str]) -> None:
    """Where a hostile name shows, Markdown reads none of its syntax (every special character is escaped)."""
    shown = [t for t in texts if MARK in t]
    assert shown, "the hostile names are not shown at all"
    for text in shown:
        bare = re.sub(r"\\.", "", text)
        for syntax in ("](", "![", "<span", ":red["):
            assert syntax not in bare, (syntax, text)


def test_hostile_stored_names_render_as_text(home):
    store = RunStore()
    for kind, name in HOSTILE.items():
        run = store.create_run({"pretrained": "band-gap", "target": "band_gap"}, owner=name, status="done")
        store.set_name(run, f"{name} {kind}")  # stored before names were validated
    at = open_page("app_pages/2_Fine_tune.py")
    assert not at.exception
    assert_inert(rendered_texts(at))
    at = open_page("app_pages/3_Compare_runs.py")
    assert not at.exception
    figures = " ".join(json.dumps(json.loads(c.proto.spec)) for c in at.get("plotly_chart"))
    assert "<span" not in figures and "<a " not in figures


def test_second_browser_cannot_act_as_the_first(home):
    store = RunStore()
    run = store.create_run({"pretrained": "band-gap", "target": "band_gap"}, owner="alice", status="done")
    first = open_page("app_pages/2_Fine_tune.py", "alice", "a")
    assert not first.exception and not first.error
    assert first.button(key=f"delete_{run}")  # the claiming browser sees its controls
    second = open_page("app_pages/2_Fine_tune.py", "alice", "b")  # a classmate types "alice"
    assert any("already used" in e.value for e in second.sidebar.error)
    assert not [b for b in second.button if b.key and b.key.startswith(("delete_", "cancel_", "save_"))]
    second.toggle(key="ft_everyone").set_value(True).run()
    assert not [b for b in second.button if b.key and b.key.startswith(("delete_", "cancel_", "save_"))]
    assert store.exists(run)


def test_a_hostile_display_name_is_refused(home):
    at = open_page("app_pages/2_Fine_tune.py", HOSTILE["directive"])
    assert any("may hold only letters" in e.value for e in at.sidebar.error)
    assert not RunStore().name_claim(HOSTILE["directive"].casefold())
