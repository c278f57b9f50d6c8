"""The model zoo: small models trained here, on the built-in tasks' factual data, so that
nothing has to be downloaded. Deterministic by seed, cached on disk in the Hugging Face
directory format under `$DII_CACHE/zoo/<task>-seed<k>/` (default cache
`~/.cache/dii-workbench`), each with a `zoo.json` recording held-out accuracy and
training time.

- vectors tasks (hierarchical_equality): the DAS paper's MLP, 16 inputs, 3 hidden layers
  of 16, ReLU, 2 classes (`interventions.mlp.MLPClassifier`).
- tokens tasks: a small GPT-2 with a word-level tokenizer built from the task's
  vocabulary, trained on next-token loss at the answer only (the prompt's last position
  predicts the answer token).

`build_untrained(dir, seed)` gives the same architecture with random weights: the
"untrained model" control of the search."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch
import transformers

from experiments.errors import ConfigError
from experiments.zoo.training import (  # noqa: F401  (build_tokenizer, answer_token_id: public names of the zoo)
    LM_ARCHITECTURE, MLP_ARCHITECTURE, SPECIAL_TOKENS, Recipe, TokenProblem, VectorProblem, answer_token_id,
    build_tokenizer, data_seed, fit, leaning_factual_data)

# Bump when a recipe or architecture changes: cached models of another version retrain.
ZOO_VERSION = 2
ZOO_INFO_FILE = "zoo.json"


# The MLP trains its whole budget with strong weight decay. Stopped at 99.7% validation
# accuracy without decay, zoo seeds 0 and 1 put the two equalities in overlapping units and
# DAS read 0.84-0.94 at the first layer whatever its recipe; with weight decay 0.5 and the
# full 3,000 steps every seed 0-4 read 0.97-1.00 (README, "Hierarchical equality").
MLP_RECIPE = Recipe(max_steps=3000, batch_size=8192, lr=1e-2, n_train=40_000, weight_decay=0.5, target=None)
LM_RECIPE = Recipe(max_steps=3000, batch_size=128, lr=1e-3, n_train=40_000, weight_decay=0.01, eval_every=100)
ACCEPT = 0.99  # held-out accuracy a zoo model must reach
# For a task with no hand-tuned recipe (the user's own): each in turn until one reaches
# ACCEPT. A short warm-up on leaning data makes boolean intermediates visible in the output
# (see Recipe.lean_steps); the slower rate is the one that trained hierarchical equality.
RECIPE_LADDER = {
    "tokens": [replace(LM_RECIPE, lean_steps=300), replace(LM_RECIPE, max_steps=4000, lr=3e-4, lean_steps=1000)],
    "vectors": [MLP_RECIPE, replace(MLP_RECIPE, weight_decay=0.0, target=ACCEPT)],
}
# Measured on this 2-core machine (see zoo.json of each model for the final figures):
RECIPES: dict[str, Recipe] = {
    # lr 1e-3 (and 3e-3, 1e-2) stayed at chance; 3e-4 with a lean warm-up passes 0.99.
    "hierarchical_equality_tokens": replace(LM_RECIPE, max_steps=4000, lr=3e-4, lean_steps=1000),
    "price_tagging": replace(LM_RECIPE, lean_steps=300),
    # 199 answer words: bigger batches, a higher rate, untied embeddings (below).
    "arithmetic_carry": replace(LM_RECIPE, max_steps=3000, batch_size=256, lr=2e-3, lean_steps=500),
    # Copying the symbol before the matching option: lr 1e-3 at batch 128 reached 0.86 in
    # 3000 steps; 2e-3 at batch 256 passes 0.995 in 1500.
    "mcqa4": replace(LM_RECIPE, max_steps=4000, batch_size=256, lr=2e-3),
}

# ---------------------------------------------------------------- paths and cache


def cache_root() -> Path:
    """`$DII_CACHE/zoo` (default `~/.cache/dii-workbench/zoo`)."""
    base = os.environ.get("DII_CACHE") or "~/.cache/dii-workbench"
    return Path(base).expanduser() / "zoo"


def model_dir(task_name: str, seed: int = 0) -> Path:
    return cache_root() / f"{task_name}-seed{seed}"


def _read_info(directory: Path) -> dict | None:
    try:
        return json.loads((directory / ZOO_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(directory: Path) -> bool:
    info = _read_info(directory)
    return info is not None and info.get("zoo_version") == ZOO_VERSION and (directory / "config.json").exists()


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temp dir into place; never leaves a half-written model at `final`."""
    if final.exists():
        theirs, ours = _read_info(final) or {}, _read_info(tmp) or {}
        if _is_complete(final) and theirs.get("recipe") == ours.get("recipe"):  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        stale = final.with_name(f"{final.name}.stale-{os.getpid()}-{time.time_ns()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(tmp, final)


def _temp_dir_for(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a cache dir is ordinary
    return tmp


# ---------------------------------------------------------------- public API


def get_model(
    task_name="hierarchical_equality",
    seed: int = 0,
    progress: bool = True,
    progress_callback: Callable[[float], None] | None = None,
) -> Path:
    """The zoo model for a task (a built-in name or a Task: the user's own is cached under
    its content hash) and `seed`: the cached directory if it is complete and was trained by
    the current recipe, else trains it (deterministic for a seed on one device) and caches
    it. A task with no hand-tuned recipe tries RECIPE_LADDER in turn until one reaches
    ACCEPT held-out accuracy, and says clearly when none does."""
    from causal.errors import require_count

    require_count(seed, "the zoo model's seed", 0, ConfigError)
    task = _get_task(task_name)
    final = model_dir(cache_name(task), seed)
    recipes = _recipes_for(task)
    if _is_complete(final) and _read_info(final).get("recipe") in (None, *map(asdict, recipes)):
        if progress_callback is not None:
            progress_callback(1.0)
        return final
    tried = []
    for recipe in recipes:
        tmp = _temp_dir_for(final)
        try:
            info = train_model(task, seed, tmp, recipe=recipe, progress=progress, progress_callback=progress_callback)
            if info["heldout_accuracy"] >= ACCEPT or cache_name(task) == task.name:  # built-ins: warn, keep
                if info["heldout_accuracy"] < ACCEPT:
                    warnings.warn(f"zoo model {task.name} seed {seed} reached only "
                                  f"{info['heldout_accuracy']:.3f} held-out accuracy", stacklevel=2)
                _publish(tmp, final)
                return final
            tried.append(f"lr {recipe.lr}, {recipe.max_steps} steps, warm-up {recipe.lean_steps}: "
                         f"{info['heldout_accuracy']:.3f}")
        except OSError as e:  # a full disk, a folder we may not write: nothing half-written is kept
            raise ConfigError(f"cannot write the zoo model to {final.parent} ({e.strerror or e}); free some space "
                              "there or set DII_CACHE to another folder, then run again") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise ConfigError(f"the zoo could not train a model that does task {task.name!r} (seed {seed}): held-out "
                      f"accuracy {'; '.join(tried)}, below {ACCEPT}. Check that the output is a function the "
                      "prompt determines, or point 'model' at a model that can do the task")


def is_trained(task_name, seed: int = 0) -> bool:
    """Is the zoo model for this task and seed cached (get_model would not train)?"""
    task = _get_task(task_name)
    final = model_dir(cache_name(task), seed)
    return _is_complete(final) and _read_info(final).get("recipe") in (None, *map(asdict, _recipes_for(task)))


def cache_name(task) -> str:
    """A built-in task's cache folder is its name; the user's own adds its content hash, so
    an edited hypothesis gets a new model and the same one written another way does not."""
    from causal.tasks import TASK_NAMES, get_task

    if task.name in TASK_NAMES and task.source in ("", task.name):
        return task.name
    content = task.content_hash()
    if task.name in TASK_NAMES and content == get_task(task.name).content_hash():
        return task.name  # options that leave the trained-on content alone share the built-in's model
    return f"{task.name}-{content}"


def zoo_info(task_name: str = "hierarchical_equality", seed: int = 0) -> dict:
    """What `zoo.json` records for a trained zoo model: held-out accuracy, training time,
    steps, architecture, versions."""
    directory = model_dir(task_name, seed)
    info = _read_info(directory)
    if info is None:
        raise ConfigError(
            f"no zoo model for task {task_name!r} seed {seed} in {cache_root()}; "
            f"train it with experiments.zoo.get_model({task_name!r}, seed={seed})"
        )
    return info


def build_untrained(path_or_model_dir: str | os.PathLike, seed: int = 0) -> Path:
    """A randomly initialised model with the architecture (config) and tokenizer of the
    model in `path_or_model_dir`, saved as an HF directory under the zoo cache."""
    src = Path(path_or_model_dir).expanduser()
    if not (src / "config.json").is_file():
        raise ConfigError(
            f"{str(src)!r} is not a model directory (no config.json); pass a local HF model "
            "directory, e.g. the path experiments.zoo.get_model(...) returns"
        )
    fingerprint = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (src / name).is_file():
            fingerprint.update((src / name).read_bytes())
    final = cache_root() / f"{src.name}-untrained-seed{seed}-{fingerprint.hexdigest()[:10]}"
    if _is_complete(final):
        return final

    import interventions.mlp  # noqa: F401  (registers the MLP with AutoConfig)

    config = transformers.AutoConfig.from_pretrained(src)
    torch.manual_seed(seed)
    model = _model_class_for(config)(config)
    model.eval()

    tmp = _temp_dir_for(final)
    try:
        model.save_pretrained(tmp)
        if (src / "tokenizer_config.json").is_file() or (src / "tokenizer.json").is_file():
            transformers.AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
        _write_json(
            tmp / ZOO_INFO_FILE,
            {"zoo_version": ZOO_VERSION, "untrained": True, "source": str(src.resolve()), "seed": seed},
        )
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def train_model(
    task: Any,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    recipe: Recipe | None = None,
    progress: bool = True,
    progress_callback: Callable[[float], None] | None = None,
) -> dict:
    """Train the zoo model for `task` (a Task or its name) into `out_dir` (an existing
    directory, written in place: callers publish it atomically). Returns the zoo.json
    record. `recipe` overrides the task's recipe (tests use fewer steps)."""
    task = _get_task(task) if isinstance(task, str) else task
    if task.needs_pretrained:
        raise _needs_pretrained_error(task.name)
    out_dir = Path(out_dir)
    recipe = recipe or _recipe_for(task)

    # One thread: these models are too small to gain from more (on a busy 2-core machine
    # two threads were 10x slower), and a fixed count keeps the weights reproducible.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        started = time.perf_counter()
        if task.input_kind == "vectors":
            problem = VectorProblem(task, seed, recipe)
        else:
            problem = TokenProblem(task, seed, recipe)
        desc = f"zoo {task.name} seed {seed}"
        steps, val_accuracy = fit(problem, recipe, seed, progress, progress_callback, desc=desc)
        train_seconds = time.perf_counter() - started
        test_accuracy = problem.accuracy(problem.test)
    finally:
        torch.set_num_threads(threads)

    problem.model.save_pretrained(out_dir)
    if problem.tokenizer is not None:
        problem.tokenizer.save_pretrained(out_dir)
    info = {
        "zoo_version": ZOO_VERSION,
        "task": task.name,
        "seed": seed,
        "architecture": problem.architecture,
        "heldout_accuracy": test_accuracy,
        "n_heldout": recipe.n_test,
        "val_accuracy": val_accuracy,
        "train_seconds": round(train_seconds, 2),
        "steps": steps,
        "recipe": asdict(recipe),
        "torch_threads": 1,
        "device": "cpu",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    _write_json(out_dir / ZOO_INFO_FILE, info)
    return info


# ---------------------------------------------------------------- helpers


def _get_task(task_name):
    from causal.tasks import resolve_task

    task = resolve_task(task_name)
    if task.needs_pretrained:
        raise _needs_pretrained_error(task.name)
    return task


def _needs_pretrained_error(task_name: str) -> ConfigError:
    return ConfigError(
        f"task {task_name!r} needs a pretrained language model; the zoo trains none for it. "
        "Pass a local pretrained LM directory (e.g. model = '/path/to/gpt2') instead of the zoo"
    )


def _recipe_for(task) -> Recipe:
    return _recipes_for(task)[0]


def _recipes_for(task) -> list[Recipe]:
    if cache_name(task) == task.name:  # a built-in: its hand-tuned recipe, or the default of its kind
        return [RECIPES.get(task.name, MLP_RECIPE if task.input_kind == "vectors" else LM_RECIPE)]
    return RECIPE_LADDER[task.input_kind]


def _model_class_for(config) -> type:
    if config.model_type == "dii_mlp":
        from interventions.mlp import MLPClassifier

        return MLPClassifier
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return lambda cfg: transformers.AutoModelForCausalLM.from_config(cfg)


def _write_json(path: Path, data: dict) -> None:
    from causal.io import atomic_write_json

    atomic_write_json(path, data, sort_keys=True)
