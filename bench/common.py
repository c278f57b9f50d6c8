"""What every bench script shares: the models, the data, the clock and the memory meter.

Both sides (the peers and ours) build the same model from the same config and seed, draw
the same token batches and time the same number of steps, so the only thing that differs
between two runs is the library doing the work. This file imports neither nnsight nor the
peers: each side is timed in its own process (nnsight patches Tensor.backward on import).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

RESULT_MARK = "BENCH_RESULT "  # the line run_cpu.py / gpu.sh parse out of a script's stdout


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- models (random weights)

def model_config(shape: str):
    """GPT-2 small (124M) or a Llama-3.2-1B-like shape (about 1.1B with a 32k vocabulary)."""
    from transformers import GPT2Config, LlamaConfig

    if shape == "gpt2":
        return GPT2Config()  # 12 layers, d = 768, vocabulary 50257
    if shape == "gpt2-medium":
        return GPT2Config(n_layer=24, n_embd=1024, n_head=16)  # 355M
    if shape == "llama1b":
        return LlamaConfig(
            hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
            max_position_embeddings=2048, tie_word_embeddings=False,
        )
    if shape == "tinyllama":  # the Llama code path at smoke-test size
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=128, max_position_embeddings=128,
                           bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if shape == "tiny":  # for the cross-checks and quick smoke runs
        return GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=128,
                          bos_token_id=0, eos_token_id=0)
    raise SystemExit(f"unknown model shape {shape!r}: use gpt2, gpt2-medium, llama1b, tiny, tinyllama or smollm2")


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct's pretrained weights, dequantized from its GGUF file
    (scripts/fetch_models.sh) into a Hugging Face directory by the project's venv (the peers
    venv has no `gguf`); cached after the first call."""
    root = Path(__file__).resolve().parents[1]
    gguf = root / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise SystemExit(f"{gguf} is missing: run `bash scripts/fetch_models.sh`")
    code = f"from interventions.gguf import converted; print(converted({str(gguf)!r}))"
    out = subprocess.run([str(root / ".venv" / "bin" / "python"), "-c", code], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def build_model(shape: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """The frozen model both sides run: same config, same seed, eval mode, no gradients.
    "smollm2" is the real pretrained SmolLM2-135M-Instruct (30 layers, width 576)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    if shape == "smollm2":
        model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), torch_dtype=dtype).to(device())
        model.eval()
        model.requires_grad_(False)
        return model
    dev = device()
    # Initialise on the target device: a 1B model's random init on the CPU takes minutes.
    with dev:
        model = AutoModelForCausalLM.from_config(model_config(shape), dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer over tokens "t0".."t{V-1}", built in memory (no download).

    Our Model treats a network as a language model (KV-cache fast path) when it has a
    tokenizer; the bench feeds token ids directly, so any tokenizer of the right size does.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", eos_token="t0")


def das_rates(args, per_layer: list[dict]) -> dict:
    """Throughput of a DAS run from its per-site timings, computed the same way for both sides."""
    timed = sum(p["ms_per_step"] for p in per_layer) * args.steps / 1000
    n_steps = args.steps * len(per_layer)
    return {"timed_s": timed, "ms_per_step": timed * 1000 / n_steps,
            "examples_per_s": args.batch * n_steps / timed, "steps_per_s": n_steps / timed,
            "final_loss": per_layer[-1]["final_loss"], "per_layer": per_layer}


def reft_rates(args, tokens_per_step: int, timing, losses: list[float]) -> dict:
    """Throughput of a LoReFT run, computed the same way for both sides."""
    return {"ms_per_step": timing.ms_per_step,
            "tokens_per_s": tokens_per_step * args.steps / timing.seconds,
            "examples_per_s": args.batch * args.steps / timing.seconds,
            "first_loss": losses[0], "final_loss": losses[-1]}


def measure_reft(step, args, dev, losses: list[float]) -> dict:
    """A finetuning side's timed steps, peak memory and (with --count-flops, one more step
    counted after the timing) FLOPs, as the fields every side reports."""
    with PeakMemory(dev) as mem:
        timing = time_steps(step, args.warmup, args.steps, dev)
    flops = count_flops(lambda: step(0)) if args.count_flops else None
    tokens = args.batch * (args.prompt_len + args.response_len)
    return {**reft_rates(args, tokens, timing, losses), "peak_mem_bytes": mem.peak_bytes,
            **({"flops_per_step": flops} if flops else {})}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- data (random tokens)

def das_batches(vocab: int, n: int, batch: int, seq: int, seed: int = 0):
    """n batches of (base ids, source ids, label ids): random tokens, the same on both sides."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        base = torch.randint(0, vocab, (batch, seq), generator=g)
        source = torch.randint(0, vocab, (batch, seq), generator=g)
        labels = torch.randint(0, vocab, (batch,), generator=g)
        out.append((base, source, labels))
    return out


def reft_batches(vocab: int, n: int, batch: int, prompt_len: int, response_len: int, seed: int = 0):
    """n batches of (input ids, labels): prompt + response; labels are -100 on the prompt.

    Every sequence has the same length, so no padding enters either side's timing.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, prompt_len + response_len), generator=g)
        labels = ids.clone()
        labels[:, :prompt_len] = -100
        out.append((ids, labels))
    return out


# ---------------------------------------------------------------- memory

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from experiments.memory import PeakMemory  # noqa: E402,F401  (the one meter: torch only, the peers' venv has it)


# ---------------------------------------------------------------- timing and output

@dataclass
class Timing:
    steps: int
    seconds: float

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.seconds / self.steps


def time_steps(step, n_warmup: int, n_steps: int, dev: torch.device) -> Timing:
    """Runs step(i) n_warmup times untimed, then n_steps times timed (device synchronised)."""
    for i in range(n_warmup):
        step(i)
    sync(dev)
    t0 = time.perf_counter()
    for i in range(n_steps):
        step(n_warmup + i)
    sync(dev)
    return Timing(n_steps, time.perf_counter() - t0)


# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def peak_bf16_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def count_flops(step) -> int:
    """FLOPs of one call of step() (forward and backward matmuls, as torch counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with counter:
            step()
    except AssertionError as e:  # torch's SDPA FLOP formula rejects grouped-query attention
        print(f"FLOP count unavailable: {e}", flush=True)
        return None
    return int(counter.get_total_flops())


def flops_fields(flops_per_step: int | None, ms_per_step: float) -> dict:
    if flops_per_step is None:
        return {"flops_per_step": None, "share_of_peak": None}
    achieved = flops_per_step / (ms_per_step / 1000)
    peak = peak_bf16_flops()
    return {"flops_per_step": flops_per_step, "achieved_flops_per_s": achieved,
            "peak_bf16_flops_per_s": peak, "share_of_peak": achieved / peak if peak else None}


def emit(result: dict) -> None:
    """Prints the result as one JSON line that the drivers parse."""
    result.setdefault("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    result.setdefault("torch", torch.__version__)
    result.setdefault("threads", torch.get_num_threads())
    print(RESULT_MARK + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    return None


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _workload(description: str, batch: int) -> argparse.ArgumentParser:
    """The flags every workload has: the model shape, its dtype and the batch."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="gpt2", help="gpt2 | llama1b | tiny | tinyllama | smollm2 (pretrained)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--batch", type=int, default=batch)
    return p


def das_args(argv=None) -> argparse.Namespace:
    """The DAS workload, the same flags for pyvene_das.py and ours_das.py."""
    p = _workload("One side of the DAS training benchmark.", batch=32)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--layer", type=int, default=6)
    p.add_argument("--k", type=int, default=16, help="rank of the rotated subspace")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--data-batches", type=int, default=4,
                   help="distinct batches the steps cycle through (ours prepares each once)")
    p.add_argument("--sweep", action="store_true",
                   help="train one subspace per layer at the last position; time the whole sweep")
    p.add_argument("--count-flops", action="store_true",
                   help="count one training step's FLOPs (torch FlopCounterMode) and report FLOP/s")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def reft_args(argv=None) -> argparse.Namespace:
    """The LoReFT workload, the same flags for pyreft_loreft.py and ours_loreft.py."""
    p = _workload("One side of the LoReFT finetuning benchmark.", batch=8)
    p.add_argument("--prompt-len", type=int, default=48)
    p.add_argument("--response-len", type=int, default=16)
    p.add_argument("--layers", default="2,4,6,8")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--first", type=int, default=1, help="f: intervene on the first f prompt tokens")
    p.add_argument("--last", type=int, default=1, help="l: intervene on the last l prompt tokens")
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--data-batches", type=int, default=4, help="distinct batches the steps cycle through")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--count-flops", action="store_true",
                   help="count one training step's FLOPs (torch FlopCounterMode): the work each side does")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.layers = [int(x) for x in a.layers.split(",")]
    return a


def reft_positions(prompt_len: int, first: int, last: int) -> list[int]:
    """pyreft's f+l positions: the first f and the last l tokens of the prompt."""
    return list(range(first)) + list(range(prompt_len - last, prompt_len))


def ensure_bench_on_path() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
