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
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from torch import nn
from tqdm.auto import tqdm

from experiments.errors import ConfigError

# Bump when a recipe or architecture changes: cached models of another version retrain.
ZOO_VERSION = 2
ZOO_INFO_FILE = "zoo.json"
SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>"}


@dataclass(frozen=True)
class Recipe:
    """How one zoo model trains; early stopping once the validation accuracy reaches `target`."""

    max_steps: int
    batch_size: int
    lr: float
    n_train: int
    n_val: int = 2000
    n_test: int = 4000
    eval_every: int = 50
    target: float = 0.997
    weight_decay: float = 0.0
    # Warm-up steps on data where each boolean intermediate of the main hypothesis is True
    # with probability `lean`. Under the balanced sampler, (a == b) == (c == d) carries no
    # signal about either equality alone, and the LM sat at chance for 3000 steps; leaning
    # makes each intermediate visible in the output, and the balanced phase then finishes.
    lean_steps: int = 0
    lean: float = 0.8
    clip_grad_norm: float = 1.0


# Full-batch-ish Adam is fast for the 16-wide MLP; the LMs take minibatches.
MLP_RECIPE = Recipe(max_steps=3000, batch_size=8192, lr=1e-2, n_train=40_000)
LM_RECIPE = Recipe(max_steps=3000, batch_size=128, lr=1e-3, n_train=40_000, weight_decay=0.01, eval_every=100)
# Measured on this 2-core machine (see zoo.json of each model for the final figures):
RECIPES: dict[str, Recipe] = {
    # lr 1e-3 (and 3e-3, 1e-2) stayed at chance; 3e-4 with a lean warm-up passes 0.99.
    "hierarchical_equality_tokens": replace(LM_RECIPE, max_steps=4000, lr=3e-4, lean_steps=1000),
    "price_tagging": replace(LM_RECIPE, lean_steps=300),
    # 199 answer words: bigger batches, a higher rate, untied embeddings (below).
    "arithmetic_carry": replace(LM_RECIPE, max_steps=3000, batch_size=256, lr=2e-3, lean_steps=500),
}

LM_ARCHITECTURE = dict(n_layer=4, n_embd=64, n_head=4, n_positions=32)
# Sum words "0".."198" share embeddings with the digit words when tied; untied, arithmetic
# reached 0.99 in 1300 steps instead of 3400.
LM_ARCHITECTURE_OVERRIDES: dict[str, dict] = {"arithmetic_carry": {"tie_word_embeddings": False}}
MLP_ARCHITECTURE = dict(input_size=16, hidden_size=16, n_hidden=3, n_classes=2, activation="relu")


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
        if _is_complete(final):  # another process finished first: keep theirs
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
    task_name: str = "hierarchical_equality",
    seed: int = 0,
    progress: bool = True,
    progress_callback: Callable[[float], None] | None = None,
) -> Path:
    """The zoo model for `task_name` and `seed`: the cached directory if it is complete,
    else trains it (deterministic for a seed on one device) and caches it."""
    task = _get_task(task_name)
    final = model_dir(task.name, seed)
    if _is_complete(final):
        if progress_callback is not None:
            progress_callback(1.0)
        return final
    tmp = _temp_dir_for(final)
    try:
        info = train_model(task, seed, tmp, progress=progress, progress_callback=progress_callback)
        if info["heldout_accuracy"] < 0.99:
            warnings.warn(
                f"zoo model {task.name} seed {seed} reached only {info['heldout_accuracy']:.3f} held-out accuracy",
                stacklevel=2,
            )
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


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
            problem = _VectorProblem(task, seed, recipe)
        else:
            problem = _TokenProblem(task, seed, recipe)
        desc = f"zoo {task.name} seed {seed}"
        steps, val_accuracy = _fit(problem, recipe, seed, progress, progress_callback, desc=desc)
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


# ---------------------------------------------------------------- training


class _Problem:
    """A model plus tensors of train/val/test examples and the logits at the answer."""

    model: nn.Module
    tokenizer: Any = None
    warmup: dict[str, torch.Tensor] | None = None  # lean-phase training data, if any
    architecture: dict
    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor]

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def accuracy(self, data: dict[str, torch.Tensor], chunk: int = 4096) -> float:
        self.model.eval()
        n = len(data["target"])
        correct = 0
        for i in range(0, n, chunk):
            part = {k: v[i : i + chunk] for k, v in data.items()}
            correct += (self.logits(part).argmax(-1) == part["target"]).sum().item()
        self.model.train()
        return correct / n


class _VectorProblem(_Problem):
    def __init__(self, task, seed: int, recipe: Recipe):
        from interventions.mlp import MLPClassifier, MLPClassifierConfig

        self.train, self.val, self.test = (
            self._tensors(task, n, _data_seed(seed, part))
            for part, n in (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test))
        )
        width = self.train["inputs"].shape[1]
        if width != MLP_ARCHITECTURE["input_size"]:
            raise ConfigError(
                f"task {task.name!r} renders {width} floats; the zoo MLP takes "
                f"{MLP_ARCHITECTURE['input_size']}: use a task with 16-dimensional inputs"
            )
        n_classes = max(int(c) for c in task.answers.values()) + 1
        self.architecture = {**MLP_ARCHITECTURE, "n_classes": n_classes, "model_type": "dii_mlp"}
        config = MLPClassifierConfig(**{**MLP_ARCHITECTURE, "n_classes": n_classes})
        self.model = MLPClassifier(config)
        self.model.train()

    @staticmethod
    def _tensors(task, n: int, seed: int) -> dict[str, torch.Tensor]:
        data = task.factual_data(n, seed=seed)
        inputs = torch.tensor([task.render(x) for x, _ in data], dtype=torch.float32)
        target = torch.tensor([int(task.answer(y)) for _, y in data], dtype=torch.long)
        return {"inputs": inputs, "target": target}

    def logits(self, batch):
        return self.model(inputs=batch["inputs"]).logits


class _TokenProblem(_Problem):
    def __init__(self, task, seed: int, recipe: Recipe):
        self.tokenizer = build_tokenizer(task.vocabulary)
        self._answer_ids = {v: answer_token_id(self.tokenizer, task, v) for v in task.answers}
        self.train, self.val, self.test = (
            self._tensors(task, n, _data_seed(seed, part))
            for part, n in (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test))
        )
        self.warmup = None
        if recipe.lean_steps > 0:
            self.warmup = self._tensors(task, recipe.n_train // 2, _data_seed(seed, "warmup"), lean=recipe.lean)
        architecture = {**LM_ARCHITECTURE, **LM_ARCHITECTURE_OVERRIDES.get(task.name, {})}
        longest = max(self.train["input_ids"].shape[1], self.warmup["input_ids"].shape[1] if self.warmup else 0)
        if longest > architecture["n_positions"]:
            raise ConfigError(
                f"task {task.name!r} prompts take {longest} tokens; the zoo LM has "
                f"{architecture['n_positions']} positions: shorten the task's template"
            )
        config = transformers.GPT2Config(
            vocab_size=len(self.tokenizer),
            **architecture,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.tokenizer.bos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        self.architecture = {**architecture, "vocab_size": len(self.tokenizer), "model_type": "gpt2"}
        self.model = transformers.GPT2LMHeadModel(config)
        self.model.train()

    def _tensors(self, task, n: int, seed: int, lean: float | None = None) -> dict[str, torch.Tensor]:
        data = task.factual_data(n, seed=seed) if lean is None else leaning_factual_data(task, n, seed, lean)
        enc = self.tokenizer([task.render(x) for x, _ in data], padding=True, return_tensors="pt")
        if (enc["input_ids"] == self.tokenizer.unk_token_id).any():
            row = (enc["input_ids"] == self.tokenizer.unk_token_id).any(1).nonzero()[0, 0].item()
            raise ConfigError(
                f"task {task.name!r}: a prompt has words outside task.vocabulary: "
                f"{task.render(data[row][0])!r}; add them to the task's vocabulary"
            )
        target = torch.tensor([self._answer_ids[y] for _, y in data], dtype=torch.long)
        # Right padding: the answer is predicted at the last real token.
        last = enc["attention_mask"].sum(1) - 1
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "last": last, "target": target}

    def logits(self, batch):
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.logits[torch.arange(len(batch["last"])), batch["last"]]


def _lr_factor(step: int, max_steps: int, warmup: int = 100, floor: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to `floor` at max_steps (the late steps settle the
    last percent of accuracy instead of bouncing around it)."""
    cosine = 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))
    return min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * cosine)


class _Batches:
    """Minibatches of a tensor dict in a seeded shuffled order, reshuffled every epoch."""

    def __init__(self, data: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator):
        self.data, self.generator = data, generator
        self.n = len(data["target"])
        self.batch_size = min(batch_size, self.n)
        self.order, self.cursor = torch.randperm(self.n, generator=generator), 0

    def next(self) -> dict[str, torch.Tensor]:
        if self.cursor + self.batch_size > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.generator), 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return {k: v[idx] for k, v in self.data.items()}


def _fit(problem: _Problem, recipe: Recipe, seed: int, progress: bool, callback, desc: str) -> tuple[int, float]:
    """AdamW on cross-entropy at the answer, shuffled minibatches in a seeded order (a lean
    warm-up phase first, if the recipe has one), until the validation accuracy reaches the
    recipe's target after the warm-up, or the step budget runs out."""
    params = list(problem.model.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe.max_steps))
    order_rng = torch.Generator().manual_seed(seed)
    main = _Batches(problem.train, recipe.batch_size, order_rng)
    warmup = _Batches(problem.warmup, recipe.batch_size, order_rng) if problem.warmup is not None else None
    lean_steps = recipe.lean_steps if warmup is not None else 0
    val_accuracy, step = 0.0, 0
    bar = tqdm(total=recipe.max_steps, desc=desc, disable=not progress, leave=False)
    try:
        for step in range(1, recipe.max_steps + 1):
            batch = warmup.next() if step <= lean_steps else main.next()
            loss = nn.functional.cross_entropy(problem.logits(batch), batch["target"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip_grad_norm:
                nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
            optimizer.step()
            schedule.step()
            bar.update(1)
            if step % recipe.eval_every == 0 or step == recipe.max_steps:
                val_accuracy = problem.accuracy(problem.val)
                bar.set_postfix(loss=f"{loss.item():.4f}", val_acc=f"{val_accuracy:.4f}")
                if callback is not None:
                    callback(step / recipe.max_steps)
                if val_accuracy >= recipe.target and step > lean_steps:
                    break
    finally:
        bar.close()
    if callback is not None:
        callback(1.0)
    problem.model.eval()
    return step, val_accuracy


# ---------------------------------------------------------------- tokenizer


def build_tokenizer(vocabulary: list[str]) -> transformers.PreTrainedTokenizerFast:
    """A word-level tokenizer (whitespace split) over `vocabulary`, with pad/unk/bos tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = list(SPECIAL_TOKENS.values())
    for word in vocabulary:
        for piece in str(word).split():
            if piece not in words:
                words.append(piece)
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["bos"],
        padding_side="right",
    )


def answer_token_id(tokenizer, task, output_value) -> int:
    """The single token that answers `output_value`; an error when the answer is several tokens."""
    ids = tokenizer(task.answer(output_value), add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ConfigError(
            f"task {task.name!r}: answer {task.answer(output_value)!r} is not one known word; "
            "make every answer a single word of task.vocabulary"
        )
    return ids[0]


# ---------------------------------------------------------------- helpers


def _get_task(task_name: str):
    from causal.tasks import get_task

    task = get_task(task_name)
    if task.needs_pretrained:
        raise _needs_pretrained_error(task.name)
    return task


def _needs_pretrained_error(task_name: str) -> ConfigError:
    return ConfigError(
        f"task {task_name!r} needs a pretrained language model; the zoo trains none for it. "
        "Pass a local pretrained LM directory (e.g. model = '/path/to/gpt2') instead of the zoo"
    )


def _recipe_for(task) -> Recipe:
    if task.name in RECIPES:
        return RECIPES[task.name]
    return MLP_RECIPE if task.input_kind == "vectors" else LM_RECIPE


def _data_seed(seed: int, part: str) -> int:
    # Disjoint sampling streams per split; the same for a seed on every run.
    return {"train": 1_000_003, "val": 2_000_003, "test": 3_000_017, "warmup": 4_000_037}[part] + seed


def leaning_factual_data(task, n: int, seed: int, lean: float) -> list[tuple[dict, Any]]:
    """n (inputs, output) pairs from the task's sampler, rejection-sampled so that each
    boolean intermediate of the main hypothesis is True with probability about `lean`
    (exactly, when they are independent and balanced under the sampler, as in the tasks)."""
    model = task.causal_model
    flags = [v for v in model.intermediates if set(model.variables[v]) == {False, True}]
    if not flags:
        return task.factual_data(n, seed=seed)
    rng = random.Random(seed)
    top = max(lean, 1 - lean) ** len(flags)
    out: list[tuple[dict, Any]] = []
    while len(out) < n:
        x = task.sample_input(rng)
        setting = model.run(x)
        weight = 1.0
        for v in flags:
            weight *= lean if setting[v] else 1 - lean
        if rng.random() * top < weight:
            out.append((x, setting[model.output]))
    return out


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
