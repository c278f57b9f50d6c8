"""Tiny models of every supported architecture, built from HF configs with random weights
(nothing downloads), a word-level fast tokenizer, and a small prompt task whose examples
have different lengths (so positions differ across a batch)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
import transformers
from torch import nn

from interventions import load_model

WORDS = ["the", "a", "red", "blue", "cat", "dog", "sat", "ran", "on", "mat", "?", "true", "false", "very", "big"]

_COMMON = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=64)
ARCH_CONFIGS = {
    "gpt2": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=64),
    "gpt_neox": dict(_COMMON, intermediate_size=64),
    "llama": dict(_COMMON, num_key_value_heads=2, intermediate_size=64),
    "qwen2": dict(_COMMON, num_key_value_heads=2, intermediate_size=64),
    "gemma2": dict(_COMMON, num_key_value_heads=2, intermediate_size=64, head_dim=8),
    "mistral": dict(_COMMON, num_key_value_heads=2, intermediate_size=64),
    "phi3": dict(_COMMON, num_key_value_heads=2, intermediate_size=64, pad_token_id=0),
    "opt": dict(_COMMON, ffn_dim=64, word_embed_proj_dim=32),
    "bert": dict(_COMMON, intermediate_size=64),
}
ARCHS = list(ARCH_CONFIGS)
CAUSAL_ARCHS = [a for a in ARCHS if a != "bert"]


def make_tokenizer(padding_side: str = "right") -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", padding_side=padding_side
    )


def make_hf(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(arch, **ARCH_CONFIGS[arch])
    config.bos_token_id = config.eos_token_id = None
    auto = transformers.AutoModelForMaskedLM if arch == "bert" else transformers.AutoModelForCausalLM
    return auto.from_config(config)


def make_lm(arch: str, padding_side: str = "right", seed: int = 0):
    return load_model(make_hf(arch, seed), device="cpu", tokenizer=make_tokenizer(padding_side), name=f"tiny-{arch}")


@dataclass
class PromptTask:
    """Duck-typed like causal.tasks.Task: "[filler] the <adj> <noun> sat ?" with named
    positions adj and noun; filler length varies so positions differ per example."""

    name: str = "tiny_prompt"
    input_kind: str = "tokens"

    def __post_init__(self):
        self.answers = {True: " true", False: " false"}

    def segments(self, inputs: dict):
        filler = " ".join(["very"] * inputs["n_filler"])
        return [
            ((filler + " ") if filler else "", None),
            ("the", None),
            (" " + inputs["adj"], "adj"),
            (" " + inputs["noun"], "noun"),
            (" sat ?", None),
        ]

    def render(self, inputs: dict) -> str:
        return "".join(t for t, _ in self.segments(inputs))


def prompt_inputs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"n_filler": rng.randint(0, 3), "adj": rng.choice(["red", "blue", "big"]), "noun": rng.choice(["cat", "dog", "mat"])}
        for _ in range(n)
    ]


@dataclass
class VectorTask:
    name: str = "tiny_vectors"
    input_kind: str = "vectors"

    def __post_init__(self):
        self.answers = {False: 0, True: 1}

    def render(self, inputs: dict) -> list[float]:
        return list(inputs["x"])


def vector_inputs(n: int, d: int = 16, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(d, generator=g).tolist()} for _ in range(n)]


def make_mlp_module(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 20), nn.ReLU(), nn.Linear(20, 2))


def pytest_generate_tests(metafunc):
    # `arch` runs a test on every architecture; `causal_arch` on the causal LMs only.
    explicit = {m.args[0] for m in metafunc.definition.iter_markers("parametrize")}
    if "arch" in metafunc.fixturenames and "arch" not in explicit:
        metafunc.parametrize("arch", ARCHS)
    if "causal_arch" in metafunc.fixturenames:
        metafunc.parametrize("causal_arch", CAUSAL_ARCHS)


class Tiny:
    """The helpers above, handed to tests as the `tiny` fixture."""

    ARCHS = ARCHS
    CAUSAL_ARCHS = CAUSAL_ARCHS
    make_hf = staticmethod(make_hf)
    make_lm = staticmethod(make_lm)
    make_tokenizer = staticmethod(make_tokenizer)
    make_mlp_module = staticmethod(make_mlp_module)
    prompt_inputs = staticmethod(prompt_inputs)
    vector_inputs = staticmethod(vector_inputs)
    PromptTask = PromptTask
    VectorTask = VectorTask


@pytest.fixture
def tiny():
    return Tiny


def train_with_adam(module: nn.Module, loss_fn, steps: int = 1000, lr: float = 1e-2) -> torch.Tensor:
    """`steps` Adam steps on loss_fn(); returns the rotation it started from (to check it moved)."""
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    start = module.rotation.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return start
