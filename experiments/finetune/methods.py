"""What trains in a finetune, one class per family: ReFT (ours), peft (LoRA, prefix and
prompt tuning) and full finetuning; the same forward/loss surface for the loop."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from experiments.errors import ConfigError
from interventions.reft_artifact import REFT_METHODS, ReftInterventions
from experiments.finetune.config import PEFT_METHODS, FinetuneConfig
from experiments.finetune.data import Encoded
from experiments.finetune.generation import hf_generate
from experiments.finetune.loss import response_loss_terms


# ---- methods
class Method:
    """What trains and how a batch runs through the model, one class per family."""

    name: str
    params: list[nn.Parameter]

    def logits(self, batch: Encoded) -> torch.Tensor:  # [B, T, V] aligned with batch.input_ids
        return self.forward(batch).logits

    def forward(self, batch: Encoded):
        """The model's output for the batch (with this method's edits applied)."""
        raise NotImplementedError

    def loss_terms(self, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What training and evaluation need: summed response-token CE, correct tokens per row,
        response tokens per row. The LM head runs on the response tokens only."""
        return response_loss_terms(self.model.hf, lambda: self.forward(batch), batch.labels)

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.params)

    def generate(self, prompts: list[str], max_new_tokens: int) -> torch.Tensor:
        """New token ids of greedy decoding, this method's edits applied (the prompt only, for ReFT)."""
        return hf_generate(self.model, self.model.hf, prompts, max_new_tokens)

    def formula_count(self) -> int:
        raise NotImplementedError

    def formula_text(self) -> str:
        raise NotImplementedError

    def train(self) -> None: ...

    def eval(self) -> None: ...


class ReftMethod(Method):
    def __init__(self, model, config: FinetuneConfig, layers: list[int], provenance: dict):
        self.model, self.name = model, config.method
        torch.manual_seed(config.seed)
        self.reft = ReftInterventions(config.method, model.hidden_size, config.rank, layers, config.positions,
                                      config.share_weights, config.component, config.dropout, provenance)
        if config.init_from is not None:
            init_from_subspace(self.reft, config.init_from, model, config.freeze_rotation)
        self.reft.to(model.device)
        self.params = [p for p in self.reft.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        with self.reft.attached(self.model, batch.prompt_lengths):
            return self.model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def generate(self, prompts: list[str], max_new_tokens: int) -> torch.Tensor:
        return hf_generate(self.model, self.model.hf, prompts, max_new_tokens,
                           context=lambda lengths, offsets: self.reft.attached(self.model, lengths, offsets))

    def formula_count(self) -> int:
        return self.reft.formula_count()

    def formula_text(self) -> str:
        per = "dr + r" if self.reft.frozen_rotation else "2dr + r"
        return (f"{len(self.reft.units)} interventions x ({per}) with d={self.reft.d}, r={self.reft.rank}")

    def train(self) -> None:
        self.reft.train()

    def eval(self) -> None:
        self.reft.eval()


def init_from_subspace(reft: ReftInterventions, directory: str, model, freeze: bool) -> None:
    """Every LoReFT unit starts R from the subspace's directions."""
    from interventions.artifact import Subspace
    from interventions.reft import LoReFT

    if reft.method != "loreft":
        raise ConfigError("init_from needs method 'loreft' (DiReFT has no rotation to start from)")
    sub = Subspace.load(directory, model=model)
    rotation = sub.rotation.detach().float().cpu()
    for key in list(reft.units):
        old = reft.units[key]
        new = LoReFT.from_rotation(rotation, r=reft.rank, dropout=reft.dropout)
        if freeze:
            new.freeze_rotation()
        reft.units[key] = new
        del old
    reft.provenance["init_from"] = {"path": str(directory), "k": int(rotation.shape[0]), "site": sub.site,
                                    "variables": list(sub.variables), "frozen": bool(freeze)}


class PeftMethod(Method):
    def __init__(self, model, config: FinetuneConfig):
        from peft import (LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType,
                          get_peft_model)

        self.model, self.name = model, config.method
        torch.manual_seed(config.seed)
        if config.method == "lora":
            target = config.lora_target_modules
            if target is None and getattr(model.hf.config, "model_type", "") == "gpt2":
                target = ["c_attn"]
            peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                                     lora_dropout=config.lora_dropout, target_modules=target,
                                     fan_in_fan_out=getattr(model.hf.config, "model_type", "") == "gpt2")
        elif config.method == "prefix_tuning":
            peft_config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
        else:
            peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
        try:
            self.peft_model = get_peft_model(model.hf, peft_config)
        except ValueError as e:
            raise ConfigError(f"peft cannot apply {config.method} to this model ({e}); for LoRA set "
                              f"lora_target_modules to the names of its linear layers") from None
        self.peft_model.to(model.device)
        self.params = [p for p in self.peft_model.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        return self.peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def generate(self, prompts: list[str], max_new_tokens: int) -> torch.Tensor:
        # With a cache, transformers 5.x's generate hands the model its own `cache` beside peft's
        # prefix `past_key_values` and drops the prefix, and on left-padded batches prompt
        # tuning's virtual tokens drift after two steps (tests/experiments/test_generation.py).
        # Without a cache, both match their own forward.
        extra = {"use_cache": False} if self.name in ("prefix_tuning", "prompt_tuning") else {}
        return hf_generate(self.model, self.peft_model, prompts, max_new_tokens, **extra)

    def logits(self, batch: Encoded) -> torch.Tensor:
        # prompt tuning prepends its virtual tokens to the logits: keep the real positions
        return self.forward(batch).logits[:, -batch.input_ids.shape[1]:]

    def formula_count(self) -> int:
        return int(self.peft_model.get_nb_trainable_parameters()[0])

    def train(self) -> None:
        # only the adapter's own dropout trains; the base model's stays off, as for ReFT
        for name, module in self.peft_model.named_modules():
            if "lora_dropout" in name:
                module.train()

    def eval(self) -> None:
        self.peft_model.eval()

    def formula_text(self) -> str:
        return "peft get_nb_trainable_parameters()"


class FullMethod(Method):
    def __init__(self, model, config: FinetuneConfig):
        self.model, self.name = model, "full"
        self.autocast = config.bf16
        for p in model.hf.parameters():
            p.requires_grad_(True)
        self.params = [p for p in model.hf.parameters() if p.requires_grad]

    def forward(self, batch: Encoded):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else nullcontext()
        with ctx:
            return self.model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def formula_count(self) -> int:
        return sum(p.numel() for p in self.model.hf.parameters())

    def formula_text(self) -> str:
        return "all model weights"



# ---- training
def build_method(model, config: FinetuneConfig, provenance: dict) -> Method:
    for p in model.hf.parameters():
        p.requires_grad_(False)
    model.hf.eval()  # the base model's own dropout stays off for every method
    if config.method in REFT_METHODS:
        layers = resolve_layers(config.layers, model.n_layers)
        return ReftMethod(model, config, layers, provenance)
    if config.method in PEFT_METHODS:
        return PeftMethod(model, config)
    return FullMethod(model, config)


def resolve_layers(layers, n_layers: int) -> list[int]:
    if layers == "all":
        return list(range(n_layers))
    out = []
    for l in layers:
        if not -n_layers <= l < n_layers:
            raise ConfigError(f"finetune config field 'layers': layer {l} is out of range for a model with "
                              f"{n_layers} layers; use 0..{n_layers - 1} (negative counts from the last)")
        out.append(l % n_layers)
    return sorted(set(out))
