"""How the zoo trains a model: the recipe and architecture shapes, the vector and token
training problems, the warm-up/cosine schedule and loop, and the word-level tokenizer built
from a task's vocabulary. experiments/zoo/cache.py decides what to train and caches it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from torch import nn
from tqdm.auto import tqdm

from experiments.errors import ConfigError
from experiments.schedule import lr_scheduler

SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>"}


@dataclass(frozen=True)
class Recipe:
    """How one zoo model trains; early stopping once the validation accuracy reaches `target`
    (with None, the whole budget)."""

    max_steps: int
    batch_size: int
    lr: float
    n_train: int
    n_val: int = 2000
    n_test: int = 4000
    eval_every: int = 50
    target: float | None = 0.997  # None: train the whole step budget
    weight_decay: float = 0.0
    # Warm-up steps on data where each boolean intermediate of the main hypothesis is True
    # with probability `lean`. Under the balanced sampler, (a == b) == (c == d) carries no
    # signal about either equality alone, and the LM sat at chance for 3000 steps; leaning
    # makes each intermediate visible in the output, and the balanced phase then finishes.
    lean_steps: int = 0
    lean: float = 0.8
    clip_grad_norm: float = 1.0


# Full-batch-ish Adam is fast for the 16-wide MLP; the LMs take minibatches.


LM_ARCHITECTURE = dict(n_layer=4, n_embd=64, n_head=4, n_positions=32)
# Sum words "0".."198" share embeddings with the digit words when tied; untied, arithmetic
# reached 0.99 in 1300 steps instead of 3400.
LM_ARCHITECTURE_OVERRIDES: dict[str, dict] = {"arithmetic_carry": {"tie_word_embeddings": False}}
MLP_ARCHITECTURE = dict(input_size=16, hidden_size=16, n_hidden=3, n_classes=2, activation="relu")






class Problem:
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


class VectorProblem(Problem):
    def __init__(self, task, seed: int, recipe: Recipe):
        from interventions.mlp import MLPClassifier, MLPClassifierConfig

        self.train, self.val, self.test = (
            self._tensors(task, n, data_seed(seed, part))
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


class TokenProblem(Problem):
    def __init__(self, task, seed: int, recipe: Recipe):
        self.tokenizer = build_tokenizer(task.vocabulary)
        self._answer_ids = {v: answer_token_id(self.tokenizer, task, v) for v in task.answers}
        self.train, self.val, self.test = (
            self._tensors(task, n, data_seed(seed, part))
            for part, n in (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test))
        )
        self.warmup = None
        if recipe.lean_steps > 0:
            self.warmup = self._tensors(task, recipe.n_train // 2, data_seed(seed, "warmup"), lean=recipe.lean)
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


# The zoo's schedule: a 100-step linear warm-up, then cosine decay to a floor of 0.1 (the late
# steps settle the last percent of accuracy instead of bouncing around it).
WARMUP_STEPS, LR_FLOOR = 100, 0.1


class Batches:
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


def fit(problem: Problem, recipe: Recipe, seed: int, progress: bool, callback, desc: str) -> tuple[int, float]:
    """AdamW on cross-entropy at the answer, shuffled minibatches in a seeded order (a lean
    warm-up phase first, if the recipe has one), until the validation accuracy reaches the
    recipe's target after the warm-up, or the step budget runs out."""
    params = list(problem.model.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = lr_scheduler(optimizer, "cosine", recipe.max_steps, warmup_steps=WARMUP_STEPS, floor=LR_FLOOR)
    order_rng = torch.Generator().manual_seed(seed)
    main = Batches(problem.train, recipe.batch_size, order_rng)
    warmup = Batches(problem.warmup, recipe.batch_size, order_rng) if problem.warmup is not None else None
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
                if recipe.target is not None and val_accuracy >= recipe.target and step > lean_steps:
                    break
    finally:
        bar.close()
    if callback is not None:
        callback(1.0)
    problem.model.eval()
    return step, val_accuracy






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




def data_seed(seed: int, part: str) -> int:
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
