"""A headless Streamlit client speaking the app's own websocket protocol (the ``BackMsg``/``ForwardMsg`` protobufs).

A browser tab talks to a Streamlit server over one websocket (``/_stcore/stream``): it sends a ``rerun_script``
``BackMsg`` carrying the page and every widget's value, and the server runs the page script and streams back
``ForwardMsg`` deltas (the elements) until a ``script_finished`` message. This client does the same with the
protobuf classes shipped inside the ``streamlit`` package, so the load bench measures what a student feels
(request → script finished), not static HTTP files. Widget ids are internal to Streamlit; they are read from
the deltas the server sends (by the widget's ``key`` or label), never hard-coded, so a Streamlit upgrade that
changes the protocol makes the client fail loudly (``tests/test_load_client.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

#: ``script_finished`` values that mean the script (or fragment) ran to its end.
FINISHED_OK = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
#: Element types that are widgets (they carry an ``id`` the client must send values for).
WIDGET_TYPES = {
    "button", "checkbox", "text_input", "text_area", "number_input", "selectbox", "multiselect", "slider",
    "radio", "file_uploader", "date_input", "color_picker", "toggle", "button_group", "segmented_control",
}  # fmt: skip


class ProtocolError(RuntimeError):
    """The server's messages are not what this client understands (a Streamlit upgrade changed them?)."""


@dataclass
class Widget:
    """A widget as the server described it in a delta."""

    kind: str
    id: str
    label: str
    proto: Any

    @property
    def key(self) -> str:
        """The user key the page gave it (``''`` if none): Streamlit ends keyed ids with ``-<key>``."""
        marker = self.id.rsplit("-", 1)
        return marker[1] if len(marker) == 2 and self.id.startswith("$$ID") else ""


@dataclass
class RunResult:
    """One rerun: which page, whole page or fragment, how long until ``script_finished``, what it showed."""

    page: str
    fragment: bool
    seconds: float
    status: int
    errors: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class StreamlitSession:
    """One browser session: a websocket, the page it is on, its widgets and their values.

    Args:
        url: the app's base URL (``http://127.0.0.1:8501``).
        timeout_s: longest wait for one script run to finish.
    """

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.ws_url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.origin = url.rstrip("/")
        self.timeout_s = timeout_s
        self.ws = None
        self.pages: dict[str, str] = {}  # url path -> page_script_hash
        self.page_names: dict[str, str] = {}  # url path -> title
        self.page_hash = ""
        self.query_string = ""
        self.widgets: dict[str, Widget] = {}
        self.states: dict[str, WidgetState] = {}
        self.fragments: dict[str, float] = {}  # fragment id -> auto-rerun interval (s)
        self._texts: list[str] = []
        self._errors: list[str] = []
        self._finished: asyncio.Queue[int] = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._persistent: set[str] = set()

    # ----------------------------------------------------------------------------------------- connection

    async def connect(self) -> None:
        """Open the websocket (the ``streamlit`` subprotocol, as the browser does)."""
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.ws_url, subprotocols=["streamlit"], origin=self.origin, max_size=None, open_timeout=60
        )
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        """Close the websocket and stop reading."""
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        async for data in self.ws:
            msg = ForwardMsg()
            msg.ParseFromString(data)
            self._handle(msg)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "delta":
            self._on_delta(msg.delta)
        elif kind == "navigation":
            for page in msg.navigation.app_pages:
                self.pages[page.url_pathname] = page.page_script_hash
                self.page_names[page.url_pathname] = page.page_name
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "new_session":  # a whole-page run starts: its fragments register again
            self.fragments = {}
        elif kind == "auto_rerun":
            self.fragments[msg.auto_rerun.fragment_id] = float(msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                self.fragments.pop(fragment_id, None)
        elif kind == "script_finished":
            self._finished.put_nowait(int(msg.script_finished))
        elif kind == "ref_hash":
            raise ProtocolError("the server sent a cached-message reference this client never asked for")

    def _on_delta(self, delta) -> None:
        if delta.WhichOneof("type") != "new_element":
            return
        element = delta.new_element
        kind = element.WhichOneof("type")
        if kind is None:
            return
        proto = getattr(element, kind)
        if kind in WIDGET_TYPES and getattr(proto, "id", ""):
            self.widgets[proto.id] = Widget(kind, proto.id, getattr(proto, "label", ""), proto)
        elif kind == "alert":
            text = proto.body
            self._texts.append(text)
            if proto.format == type(proto).ERROR:
                self._errors.append(text)
        elif kind == "exception":
            self._errors.append(f"{proto.type}: {proto.message}")
        elif kind == "markdown":
            self._texts.append(proto.body)
        elif kind == "progress":
            self._texts.append(proto.text)

    # ----------------------------------------------------------------------------------------- reruns

    def widget(self, key: str | None = None, label: str | None = None, kind: str | None = None) -> Widget:
        """The widget with this user key (or whose label starts with ``label``) on the current page."""
        for w in reversed(list(self.widgets.values())):
            if kind is not None and w.kind != kind:
                continue
            if key is not None and w.key == key:
                return w
            if key is None and label is not None and w.label.startswith(label):
                return w
        known = sorted(f"{w.kind}:{w.key or w.label}" for w in self.widgets.values())
        raise ProtocolError(f"no widget key={key!r} label={label!r} on this page; the server sent {known}")

    def set_value(self, widget: Widget, value: Any) -> None:
        """Remember a widget's new value (sent with the next rerun, like the browser's widget manager)."""
        state = WidgetState(id=widget.id)
        if widget.kind in ("text_input", "text_area", "selectbox", "radio"):  # a radio sends its option's text
            state.string_value = str(value)
        elif widget.kind == "number_input":
            state.double_value = float(value)
        elif widget.kind in ("checkbox", "toggle"):
            state.bool_value = bool(value)
        elif widget.kind == "multiselect":
            state.string_array_value.data.extend(str(v) for v in value)
        else:
            raise ProtocolError(f"this client cannot set a {widget.kind}")
        self.states[widget.id] = state

    async def rerun(self, fragment_id: str = "", widgets: dict[str, WidgetState] | None = None) -> RunResult:
        """Ask for a rerun of the current page (or one fragment) and wait for ``script_finished``."""
        if fragment_id and fragment_id not in self.fragments:  # the server would drop it without an answer
            raise ProtocolError(f"fragment {fragment_id} is not registered on this page any more")
        if not fragment_id:
            self.widgets = {k: w for k, w in self.widgets.items() if k in self.states}
            self.fragments = {}
        self._texts, self._errors = [], []
        msg = BackMsg()
        client = msg.rerun_script
        client.query_string = self.query_string
        client.page_script_hash = self.page_hash
        client.fragment_id = fragment_id
        client.is_auto_rerun = bool(fragment_id)
        client.widget_states.widgets.extend((widgets if widgets is not None else self.states).values())
        while not self._finished.empty():
            self._finished.get_nowait()
        started = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        try:
            status = await asyncio.wait_for(self._finished.get(), self.timeout_s)
            while status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # the script asked for a rerun (st.rerun)
                status = await asyncio.wait_for(self._finished.get(), self.timeout_s)
        except TimeoutError:
            if self._reader is not None and self._reader.done() and self._reader.exception() is not None:
                raise ProtocolError(f"reading the server's messages failed: {self._reader.exception()}") from None
            raise
        seconds = time.perf_counter() - started
        page = next((p for p, h in self.pages.items() if h == self.page_hash), self.page_hash)
        return RunResult(page or "Home", bool(fragment_id), seconds, status, list(self._errors), list(self._texts))

    async def open(self, url_path: str = "") -> RunResult:
        """Open a page by its url path (``''``: the default page), as a click in the sidebar does."""
        if url_path not in self.pages and self.pages:
            raise ProtocolError(f"no page {url_path!r}; the app has {sorted(self.pages)}")
        self.page_hash = self.pages.get(url_path, "")
        self.states = {k: s for k, s in self.states.items() if k in self._persistent}
        return await self.rerun()

    async def click(self, widget: Widget) -> RunResult:
        """Click a button (a trigger sent once, with the other widgets' values)."""
        states = dict(self.states)
        states[widget.id] = WidgetState(id=widget.id, trigger_value=True)
        return await self.rerun(widgets=states)

    def keep_across_pages(self, widget: Widget) -> None:
        """Keep sending this widget's value after a page change (the sidebar's name field)."""
        self._persistent.add(widget.id)
