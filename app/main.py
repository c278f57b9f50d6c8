"""The workbench: `streamlit run app/main.py` (or `make app`).

Pages live in app/views/, not app/pages/: Streamlit treats a pages/ folder beside the
entrypoint as legacy multipage mode and serves a deep link (/results) from it without
running this file, so without the navigation and the zoo model set-up below.

Opens on the built-in default task (hierarchical equality read from a prompt): search, results
and finetune work on it in a row with its zoo transformer. Nothing trains until asked: a zoo
model trains when the user presses "Train it now" or starts a run that needs it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

from app import caches, widgets  # noqa: E402

st.set_page_config(page_title="DII workbench", layout="wide")
st.set_option("client.toolbarMode", "minimal")  # no Deploy button, wherever the server was started from
widgets.keep_widget_values()  # form values survive a page change

widgets.PAGES.update({
    "causal_model": st.Page("views/causal_model.py", title="Causal model", url_path="causal_model", default=True),
    "alignment_search": st.Page("views/alignment_search.py", title="Alignment search", url_path="alignment_search"),
    "results": st.Page("views/results.py", title="Results", url_path="results"),
    "finetune": st.Page("views/finetune.py", title="Subspace to finetuning", url_path="finetune"),
    "compare": st.Page("views/compare.py", title="ReFT versus PEFT", url_path="compare"),
})
pages = st.navigation(list(widgets.PAGES.values()))

with st.sidebar:
    st.caption(f"Runs are saved in `{caches.runs_root().resolve()}` (set DII_RUNS to use another folder).")

pages.run()
