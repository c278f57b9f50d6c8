"""Fixtures for the app tests: zoo models come from the suite's shared cache ($DII_CACHE, set in
tests/conftest.py); each test gets its own empty runs directory; small search runs are made
once per session through the experiments API (the app pages only read them)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_zoo_model() -> Path:
    """The zoo model of the app's default task (main.py makes it ready at start)."""
    from app.caches import DEFAULT_TASK
    from experiments import zoo

    return zoo.get_model(DEFAULT_TASK, seed=0, progress=False)


@pytest.fixture(scope="session")
def mlp_zoo_model() -> Path:
    from experiments import zoo

    return zoo.get_model("hierarchical_equality", seed=0, progress=False)


def _tiny_search(runs: Path, name: str, **settings):
    from experiments.search import SearchConfig
    from experiments.search import AlignmentSearch

    config = SearchConfig(name=name, steps=10, n_train=200, n_test=100, batch_size=32, **settings)
    AlignmentSearch.from_config(config).run(run_dir=runs / name)
    return runs / name


@pytest.fixture(scope="session")
def vector_runs(tmp_path_factory, mlp_zoo_model) -> Path:
    """A runs directory holding two small searches on the default MLP (two, to compare)."""
    runs = tmp_path_factory.mktemp("runs-vectors")
    _tiny_search(runs, "he-a", model="zoo:hierarchical_equality", task="hierarchical_equality",
                 layers=[0, 1], k=4, controls=["random_rotation"], seed=0)
    _tiny_search(runs, "he-b", model="zoo:hierarchical_equality", task="hierarchical_equality",
                 layers=[0, 1], k=2, seed=1)
    return runs


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 with random weights and the price-tagging vocabulary, as a local HF
    directory: the finetune page's pipeline runs on it in seconds (what it learns is tested
    in tests/experiments on the zoo models)."""
    import torch
    import transformers

    from causal.tasks import get_task
    from experiments.zoo import build_tokenizer

    tokenizer = build_tokenizer(get_task("price_tagging").vocabulary)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=len(tokenizer),
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.bos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-lm")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def token_runs(tmp_path_factory, tiny_lm) -> Path:
    """A runs directory with one small search on the tiny LM (a tokens task)."""
    from experiments import zoo

    runs = tmp_path_factory.mktemp("runs-tokens")
    model = zoo.get_model("price_tagging", seed=0, progress=False)  # a model that does the task (shared cache)
    _tiny_search(runs, "pt", model=str(model), task="price_tagging", variables=["left"], layers=[1],
                 positions=["last"], k=2)
    return runs


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("DII_RUNS", str(runs))
    return runs


@pytest.fixture(scope="session")
def default_runs(tmp_path_factory, default_zoo_model) -> Path:
    """A runs directory with one small search on the app's default task ("small")."""
    from app.caches import DEFAULT_TASK

    runs = tmp_path_factory.mktemp("runs-default")
    _tiny_search(runs, "small", model=f"zoo:{DEFAULT_TASK}", task=DEFAULT_TASK, layers=[0, 1], positions=["last", "a"],
                 k=2, controls=["random_rotation"])
    return runs
