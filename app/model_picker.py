"""The model field every page shares: one text for a zoo model, a local folder, a hub id or a
GGUF checkpoint, kept across pages, tasks and reloads (?model=), with its dtype and device.
Nothing trains by itself: a zoo model that is not trained yet is described from its
architecture, and trains when the user presses "Train it now" or starts a run that needs it."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app import caches, widgets
from causal.errors import WorkbenchError

HELP = ("'zoo' (a small model trained here on this task, once), a local Hugging Face model folder, a hub id "
        "('gpt2', 'user/name'), or a GGUF checkpoint: a .gguf file, or 'user/repo/file.gguf' (dequantized once, "
        "then cached)")
DTYPES = ["auto", "float32", "bfloat16", "float16"]


@dataclass
class ModelChoice:
    spec: str  # what the config's `model` gets: "zoo:<task>", "zoo", a path, a hub id, a .gguf
    model_seed: int
    dtype: str | None
    device: str
    info: dict  # n_layers, hidden_size, components, is_lm, name, fingerprint (None until trained)
    trained: bool  # False: a zoo model that a run would train first


def model_field(task_spec: str, prefix: str, disabled: bool, with_dtype: bool = True) -> ModelChoice | None:
    """The model row of a form; None (with a message) while no usable model is named."""
    from causal.tasks import TASK_NAMES

    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    text = widgets.shared_text("Model", shared="model", key=f"{prefix}_model", default="zoo", where=c1, help=HELP,
                               disabled=disabled, placeholder="zoo, /path/to/model, gpt2, or model.gguf")
    if not text:
        st.info("Name a model: 'zoo', a local folder, a hub id or a .gguf file.")
        return None
    device = c3.selectbox("Device", caches.devices(), key=widgets.kept(f"{prefix}_device"), disabled=disabled)
    dtype = c4.selectbox("Dtype", DTYPES, key=widgets.kept(f"{prefix}_dtype"), disabled=disabled or not with_dtype,
                         help="the frozen model's dtype (subspaces train in float32)")
    dtype = None if dtype == "auto" else dtype
    if text == "zoo" or text.startswith("zoo:"):
        st.session_state.setdefault(f"{prefix}_zoo_seed", 0)
        seed = c2.number_input("Zoo seed", step=1, key=widgets.kept(f"{prefix}_zoo_seed"), disabled=disabled)
        if not isinstance(seed, int) or seed < 0:
            st.error(f"Zoo seed: got {seed!r}; seeds are integers >= 0.")
            return None
        task = text[4:] if text.startswith("zoo:") else task_spec
        spec = f"zoo:{task}" if task in TASK_NAMES else "zoo"
        with widgets.user_errors():
            if caches.zoo_is_trained(task, seed):
                info = caches.model_info(str(caches.zoo_model(task, seed)))
                return ModelChoice(spec, seed, dtype, device, info, True)
            info = caches.zoo_architecture(task)
            st.caption(f"The zoo model for {caches.task_label(task)} (seed {seed}) is not trained on this machine "
                       f"yet: {info['n_layers']} layers, hidden size {info['hidden_size']}. A run trains it first "
                       "(a minute or two), or:")
            if st.button("Train it now", key=f"{prefix}_train_zoo", disabled=disabled):
                caches.zoo_model(task, seed)
                st.rerun()
            return ModelChoice(spec, seed, dtype, device, info, False)
        return None
    c2.caption(" ")
    with widgets.user_errors():
        info = caches.model_info(text, dtype, device)
        return ModelChoice(text, 0, dtype, device, info, True)
    return None


def describe(choice: ModelChoice) -> str:
    info = choice.info
    what = "token positions" if info["is_lm"] else "vector inputs (no token positions)"
    fp = f", fingerprint {info['fingerprint'][:12]}" if info.get("fingerprint") else ""
    return f"{info['name']}: {info['n_layers']} layers, hidden size {info['hidden_size']}, {what}{fp}"
