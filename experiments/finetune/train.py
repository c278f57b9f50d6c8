"""Finetuning a frozen model with LoReFT/DiReFT (ours) or, for comparison, with the peft
library's LoRA / prefix tuning / prompt tuning, or all weights ("full").

Data: a built-in task (or a variant of it with a changed rule) whose answer is one token,
or a JSONL file of {"prompt": ..., "response": ...} pairs (the ReFT paper's instruction
setting). Loss: cross-entropy on the response tokens only, normalised by the number of
response tokens in the whole optimizer step (across gradient accumulation and processes),
so 1 process and N processes under torchrun compute the same update.

ReFT initialisation: random, or from a Subspace artifact (`init_from`): R starts from the
DAS directions (rank above k completed with orthogonal directions, below k the first r),
optionally frozen.

    dii finetune CONFIG.toml [--out DIR]                            # one process
    torchrun --nproc_per_node 2 -m experiments.cli finetune CONFIG.toml  # DDP (gloo on CPU)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from experiments.errors import ConfigError
from experiments.finetune.config import FinetuneConfig
from experiments.finetune.data import encode_examples, jsonl_examples, task_examples, words_of
from experiments.finetune.generation import generation_accuracy, hf_generate
from experiments.finetune.loss import evaluate, to_device, train_micro_step
from experiments.finetune.methods import Method, PeftMethod, ReftMethod, build_method
from experiments.memory import PeakMemory
from experiments.parallel import all_reduce_sum, init_process_group
from experiments.schedule import lr_scheduler


# ------------------------------------------------------------------ result
@dataclass
class FinetuneResult:
    method: str
    loss_curve: list[float]  # training loss per optimizer step
    eval_curve: list[dict]  # {"step", "loss", "accuracy", "token_accuracy"} per evaluation
    final_accuracy: float  # share of eval examples whose whole response is predicted (teacher-forced argmax)
    final_loss: float  # eval cross-entropy per response token
    final_token_accuracy: float
    trainable_params: int  # parameters with requires_grad, counted
    own_count: int  # the method's own count: 2dr + r per intervention, or peft's get_nb_trainable_parameters
    own_count_source: str
    total_params: int  # the frozen model's own weights
    trainable_percent: float
    tokens_per_second: float
    peak_memory_mb: float
    wall_seconds: float
    steps: int
    artifact_path: str | None = None
    config: dict = field(default_factory=dict)
    world_size: int = 1
    model: dict | None = None  # the frozen model's name and fingerprint
    generation_accuracy: float | None = None  # held-out responses generated exactly (greedy, prompt-only edits)
    base_generation_accuracy: float | None = None  # the same, by the model before finetuning

    def steps_to(self, accuracy: float) -> int | None:
        """The first evaluated step at which accuracy reached the bound (None if never)."""
        for row in self.eval_curve:
            if row["accuracy"] >= accuracy:
                return row["step"]
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "FinetuneResult":
        """A result as `to_dict` (and a run's finetune.json) holds it."""
        try:
            return cls(**record)
        except TypeError as e:
            raise ConfigError(f"not a finetune result ({e}); delete the run and finetune again") from None



def load_for_finetune(config: FinetuneConfig, device: str, vocabulary: list[str], task=None):
    from experiments.models import load_model_spec

    dtype = torch.bfloat16 if (config.bf16 and config.method != "full") else None  # full: fp32 under autocast
    model = load_model_spec(config.model, device=device, dtype=dtype, device_map=config.device_map,
                            model_seed=config.model_seed, vocabulary=vocabulary, task=task)
    if not getattr(model, "is_lm", True) or model.tokenizer is None:
        raise ConfigError(f"model {config.model!r} is not a language model with a tokenizer; finetuning needs one "
                          f"(use 'zoo:price_tagging', 'config:gpt2-tiny' or a local causal LM directory)")
    return model


def pick_device(config: FinetuneConfig, d_local_rank: int = 0) -> str:
    if config.device != "auto":
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("finetune config field 'device': CUDA is not available here; use 'auto' or 'cpu'")
        return config.device
    return f"cuda:{d_local_rank}" if torch.cuda.is_available() else "cpu"


def finetune(config: FinetuneConfig, progress: Callable[[int, int, float], None] | None = None,
             out_dir: str | Path | None = None, model=None, verbose: bool = True,
             base_generation: float | None = None) -> FinetuneResult:
    """Train `config.method` on the config's data and evaluate it. `progress(step, n_steps, loss)`
    is called after each optimizer step. With `out_dir`, the trained intervention (or peft
    adapter, or full model) is saved there as `out_dir/artifact` plus `out_dir/finetune.json`.
    `model` (a loaded interventions Model) skips loading; it is left frozen but a peft or
    full finetune changes it, so pass a fresh one per run. `base_generation`: the base model's
    generation accuracy on these same held-out prompts, when a caller already has it (a
    comparison scores the base once per seed, not once per method)."""
    if not isinstance(config, FinetuneConfig):
        raise ConfigError("finetune() takes a FinetuneConfig; build one with FinetuneConfig(...) or "
                          "load_finetune_config(path)")
    dist_ = init_process_group(config.device)
    device = pick_device(config, dist_.local_rank)
    if config.bf16 and not device.startswith("cuda"):
        raise ConfigError("finetune config field 'bf16': bf16 training needs a GPU; set bf16 = false on CPU")

    # data
    task = None
    if config.task is not None:
        train_ex, eval_ex, task = task_examples(config)
    else:
        train_ex, eval_ex = jsonl_examples(config)
    if model is None:
        model = load_for_finetune(config, device, words_of(train_ex + eval_ex)
                                  + (list(task.vocabulary) if task is not None else []), task)
    dev = model.device
    add_eos = config.data is not None
    train_data = encode_examples(model.tokenizer, train_ex, config.max_length, add_eos)
    eval_data = encode_examples(model.tokenizer, eval_ex, config.max_length, add_eos)

    store = None
    if out_dir is not None and dist_.is_main:  # one run store for every kind: lock, UTC times, status
        from experiments.runs import RunStore, run_versions

        store = out_dir if isinstance(out_dir, RunStore) else RunStore(out_dir)
        store.start({"config": config.to_dict(), "config_hash": config.hash(), "n_cells": None,
                     "model": {"name": model.name, "fingerprint": model.fingerprint}, "versions": run_versions(),
                     "device": str(dev)}, kind="finetune")
    try:
        provenance = {"model_name": model.name, "model_fingerprint": model.fingerprint, "model": config.model,
                      "task": task.name if task is not None else None, "data": config.data,
                      "method": config.method, "seed": config.seed, "config_hash": config.hash(),
                      "hypothesis": config.hypothesis, "config": config.to_dict(),
                      "base_model_revision": model.revision}
        total_params = sum(p.numel() for p in model.hf.parameters())
        # the base model's own answers, before any method wraps or changes it
        base_generated = base_generation
        if base_generated is None and config.eval_generate and dist_.is_main:
            base_generated = generation_accuracy(lambda prompts, n: hf_generate(model, model.hf, prompts, n),
                                                 model.tokenizer, eval_ex)
        method = build_method(model, config, provenance)
        trainable = method.trainable_count()
        formula = method.formula_count()
        if verbose and dist_.is_main:
            print(f"[{config.method}] trainable parameters: {trainable:,} = {method.formula_text()} = {formula:,} "
                  f"({100 * trainable / total_params:.4f}% of {total_params:,})", flush=True)
        if trainable != formula:
            raise RuntimeError(f"trainable parameter count {trainable} differs from the formula's {formula} "
                               f"({method.formula_text()}); this is a bug in the {config.method} setup")
        if dist_.world > 1:  # identical starting weights on every rank
            import torch.distributed as dist

            for p in method.params:
                dist.broadcast(p.data, src=0)

        # schedule
        per_step = config.batch_size * config.grad_accum
        n_steps = config.steps or config.epochs * math.ceil(len(train_data) / per_step)
        optimizer = torch.optim.AdamW(method.params, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = lr_scheduler(optimizer, config.lr_schedule, n_steps, warmup_steps=int(config.warmup_ratio * n_steps))
        order_gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed + 1000 * dist_.rank)  # dropout streams differ per rank

        def batches():
            while True:
                order = torch.randperm(len(train_data), generator=order_gen)
                for i in range(0, len(order) - per_step + 1 if len(order) >= per_step else 1, per_step):
                    yield order[i:i + per_step]

        loss_curve, eval_curve = [], []
        tokens_seen, train_seconds = 0, 0.0
        started = time.perf_counter()
        stream = batches()
        if config.eval_every:  # the curve starts where training starts
            eval_curve.append({"step": 0, **evaluate(method, eval_data, max(config.batch_size, 32), dev)})
        method.train()
        with PeakMemory(dev) as mem:
            for step in range(1, n_steps + 1):
                t0 = time.perf_counter()
                idx = next(stream)
                micro = [idx[j:j + config.batch_size] for j in range(0, len(idx), config.batch_size)]
                # the whole step's response-token count, over micro-batches and processes (every
                # rank draws the same idx, so each can count it)
                n_tokens = torch.tensor(float((train_data.labels[idx][:, 1:] != -100).sum()))
                step_loss = torch.zeros(())
                for m in micro:
                    mine = m[dist_.rank::dist_.world]
                    if len(mine) == 0:
                        continue
                    batch = to_device(train_data.rows(mine), dev)
                    step_loss += train_micro_step(method, batch, n_tokens.to(dev)).cpu()
                    tokens_seen += int(batch.attention_mask.sum())
                if dist_.world > 1:
                    for p in method.params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                        all_reduce_sum(p.grad, dist_)
                    all_reduce_sum(step_loss, dist_)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                train_seconds += time.perf_counter() - t0
                loss_curve.append(float(step_loss) / float(n_tokens))
                if progress is not None and dist_.is_main:
                    progress(step, n_steps, loss_curve[-1])
                if (config.eval_every and step % config.eval_every == 0) or step == n_steps:
                    eval_curve.append({"step": step, **evaluate(method, eval_data, max(config.batch_size, 32), dev)})
        tokens_seen = int(all_reduce_sum(torch.tensor(float(tokens_seen)), dist_))
        final = eval_curve[-1]
        generated = None
        if config.eval_generate and dist_.is_main:
            method.eval()
            generated = generation_accuracy(method.generate, model.tokenizer, eval_ex)
        result = FinetuneResult(
            method=config.method, loss_curve=loss_curve, eval_curve=eval_curve, final_accuracy=final["accuracy"],
            final_loss=final["loss"], final_token_accuracy=final["token_accuracy"], trainable_params=trainable,
            own_count=formula, own_count_source=method.formula_text(),
            total_params=total_params, trainable_percent=100 * trainable / total_params,
            tokens_per_second=tokens_seen / max(train_seconds, 1e-9), peak_memory_mb=mem.peak_mb,
            wall_seconds=time.perf_counter() - started, steps=n_steps, config=config.to_dict(), world_size=dist_.world,
            model={"name": model.name, "fingerprint": model.fingerprint}, generation_accuracy=generated,
            base_generation_accuracy=base_generated)
        if store is not None:
            result.artifact_path = str(store.write_dir("artifact", lambda tmp: save_trained(method, model, tmp)))
            store.write_json("finetune.json", result.to_dict())
            summary = {k: v for k, v in result.to_dict().items() if k not in ("loss_curve", "eval_curve", "config")}
            store.finish("finished", result=summary)
    except BaseException as e:
        if store is not None:
            store.finish_raised(e)
        raise
    return result


def save_trained(method: Method, model, directory: Path) -> None:
    """Into `directory` (a fresh folder): ReFT, our artifact (config.json + safetensors); peft,
    its adapter (safetensors); full, the model's own save_pretrained (safetensors)."""
    if isinstance(method, ReftMethod):
        method.reft.write_into(directory)
    elif isinstance(method, PeftMethod):
        method.peft_model.save_pretrained(directory)
    else:
        model.hf.save_pretrained(directory)
        model.tokenizer.save_pretrained(directory)


def format_result(r: FinetuneResult) -> str:
    return (f"{r.method}: accuracy {r.final_accuracy:.3f}, eval loss {r.final_loss:.4f}, "
            f"{r.trainable_params:,} trainable params ({r.trainable_percent:.4f}%), {r.tokens_per_second:,.0f} tokens/s, "
            f"peak memory {r.peak_memory_mb:.1f} MB, {r.wall_seconds:.1f} s"
            + (f"; saved to {r.artifact_path}" if r.artifact_path else ""))
