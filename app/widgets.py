"""What the pages' widgets share: links between pages, values that survive a page change and a
reload (`kept`, `choose`, the URL), the run picker with its Delete button, and errors shown
as messages, never tracebacks."""

from __future__ import annotations

import io
import zipfile
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from causal.errors import WorkbenchError
from app.caches import runs_root

# name -> st.Page, filled by main.py; empty when a page file runs on its own (tests).
PAGES: dict = {}


def page_link(name: str, label: str, **query_params: str) -> None:
    """A link to another page; `query_params` open it on a view (run=..., task=...)."""
    if name in PAGES:
        st.page_link(PAGES[name], label=label, query_params=query_params or None)


def page_header(title: str, intro: str, not_here: tuple[str, ...] = ()) -> None:
    """A page's title and one-paragraph introduction; `not_here`: URL parameters that do not
    describe this page's view (dropped), and the notice of a run just deleted."""
    st.title(title)
    st.write(intro)
    forget_url(*not_here)
    deleted_notice()


def run_label(row: dict) -> str:
    """A run in a selectbox: its name, and its status unless it finished."""
    status = row.get("status")
    return row["name"] if status == "finished" else f"{row['name']} ({status})"


def delete_button(name: str, key: str) -> None:
    """"Delete this run", which asks for confirmation in a dialog before removing the folder."""

    @st.dialog(f"Delete run {name}?")
    def confirm() -> None:
        st.write(f"This removes the folder `{runs_root() / name}` and everything in it: results, curves and "
                 "saved subspaces or interventions. It cannot be undone.")
        c1, c2 = st.columns(2)
        if c1.button("Delete", type="primary", key=f"{key}_yes"):
            from experiments.runs import delete_run

            try:
                delete_run(name, runs_root())
            except WorkbenchError as e:
                st.error(str(e))
                return
            for shared in ("run", "finetune_run", "compare_run"):  # the shared run choices that named it
                if st.session_state.get(shared) == name:
                    del st.session_state[shared]
            st.session_state["deleted_run"] = name
            st.rerun()
        if c2.button("Keep it", key=f"{key}_no"):
            st.rerun()

    if st.button("Delete this run", key=key, help="asks for confirmation first"):
        confirm()


def run_picker(label: str, rows: list[dict], *, shared: str, key: str) -> str:
    """Pick one of the listed runs (shared between pages and in the URL), with its status in
    the list and "Delete this run" beside it."""
    import zlib

    labels = {r["name"]: run_label(r) for r in rows}
    c1, c2 = st.columns([4, 1])
    # The browser keeps a select box's option texts while its key stays: a key that changes with
    # them redraws "(running)" as finished (the choice itself lives in `shared`).
    stamp = zlib.crc32("|".join(labels.values()).encode())
    name = choose(label, list(labels), shared=shared, key=f"{key}_{stamp}", where=c1, format_func=labels.get)
    with c2:
        st.write("")  # level with the selectbox
        delete_button(name, key=f"{key}_delete")
    return name


def deleted_notice() -> None:
    name = st.session_state.pop("deleted_run", None)
    if name:
        st.toast(f"Run {name!r} deleted.")


# ---------------------------------------------------------------- what survives a page change and a reload

_KEPT = "_kept_widget_keys"


def kept(key: str) -> str:
    """A widget key whose value survives a page change (Streamlit forgets the state of widgets
    a page does not draw; keep_widget_values() in main.py re-stores these every run)."""
    st.session_state.setdefault(_KEPT, set()).add(key)
    return key


def keep_widget_values() -> None:
    for key in st.session_state.get(_KEPT, set()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def choose(label: str, options, *, shared: str, key: str, default=None, where=None, **kwargs):
    """A selectbox whose choice is shared by every page that offers it and written to the URL
    (?shared=value), so a page change, a reload or a link opens the same view. A shared value
    that is not among `options` leaves the widget on `default` (the first option if none)."""
    where = where or st
    options = list(options)
    if not options:
        return None
    as_text = {str(o): o for o in options}
    # The URL first (a link or a reload; pages write it on every run, so otherwise it agrees with
    # the session), then the session (a page change).
    current = as_text.get(st.query_params.get(shared, ""), st.session_state.get(shared))
    if current not in options:
        current = st.session_state.get(key) if st.session_state.get(key) in options else (
            default if default in options else options[0])
    if st.session_state.get(key) != current:
        st.session_state[key] = current

    def changed() -> None:  # the user's pick wins over the URL it came with
        st.session_state[shared] = st.session_state[key]
        st.query_params[shared] = str(st.session_state[key])

    value = where.selectbox(label, options, key=key, on_change=changed, **kwargs)
    if st.session_state.get(shared) is None or st.session_state.get(shared) in options:
        st.session_state[shared] = value
    st.query_params[shared] = str(value)
    return value


def shared_text(label: str, *, shared: str, key: str, default: str = "", where=None, **kwargs) -> str:
    """A text input whose value every page that offers it shares, written to the URL
    (?shared=value): what the user typed stays when the page, the task or the view changes."""
    where = where or st
    current = st.query_params.get(shared) or st.session_state.get(shared) or st.session_state.get(key) or default
    if st.session_state.get(key) != current:
        st.session_state[key] = current

    def changed() -> None:
        st.session_state[shared] = st.session_state[key]
        st.query_params[shared] = st.session_state[key]

    value = where.text_input(label, key=key, on_change=changed, **kwargs)
    st.session_state[shared] = value
    if value:
        st.query_params[shared] = value
    return value.strip()


def forget_url(*names: str) -> None:
    """Query parameters that do not describe this page's view."""
    for name in names:
        if name in st.query_params:
            del st.query_params[name]


def zip_directory(directory: Path) -> bytes:
    """A download of an artifact directory, the folder itself at the zip's top level."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(Path(directory).rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(Path(directory).parent))
    return buf.getvalue()


@contextmanager
def user_errors():
    """Show an error the user can fix as st.error with its message, never a traceback."""
    try:
        yield
    except WorkbenchError as e:
        st.error(str(e))
