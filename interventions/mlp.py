"""A tiny multilayer-perceptron classifier in the Hugging Face format, so that plain
classifiers (the DAS paper's hierarchical-equality MLP) save, load and get addressed like
any HF model. Importing this module registers it with the Auto* classes:
`AutoModel.from_pretrained(dir)` works after `import interventions.mlp`.

Each hidden block (Linear + activation) is one module in `layers`, so a "layer" site is
that block's output; `head` maps the last hidden block to class logits."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as hf_init
from transformers.modeling_outputs import SequenceClassifierOutput

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLPClassifierConfig(PretrainedConfig):
    model_type = "dii_mlp"

    def __init__(
        self,
        input_size: int = 16,
        hidden_size: int = 16,
        n_hidden: int = 3,
        n_classes: int = 2,
        activation: str = "relu",
        **kwargs,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(_ACTIVATIONS)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.n_hidden = n_hidden
        self.n_classes = n_classes
        self.activation = activation
        # Generic tools read these names (e.g. the interventions layer's n_layers).
        self.num_hidden_layers = n_hidden
        kwargs.setdefault("num_labels", n_classes)
        super().__init__(**kwargs)


class MLPBlock(nn.Module):
    """One hidden layer: Linear then activation; its output is the layer's site."""

    def __init__(self, in_features: int, out_features: int, activation: str):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(h))


class MLPClassifier(PreTrainedModel):
    config_class = MLPClassifierConfig
    base_model_prefix = "mlp"
    main_input_name = "inputs"

    def __init__(self, config: MLPClassifierConfig):
        super().__init__(config)
        sizes = [config.input_size] + [config.hidden_size] * config.n_hidden
        self.layers = nn.ModuleList(
            MLPBlock(sizes[i], sizes[i + 1], config.activation) for i in range(config.n_hidden)
        )
        self.head = nn.Linear(sizes[-1], config.n_classes)
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's default Linear init (Kaiming uniform), not HF's N(0, 0.02): a ReLU MLP
        # this small trains poorly from near-zero weights.
        if isinstance(module, nn.Linear):
            hf_init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.in_features)
            hf_init.uniform_(module.bias, -bound, bound)

    def forward(
        self,
        inputs: torch.Tensor | None = None,
        x: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **kwargs,
    ) -> SequenceClassifierOutput:
        h = inputs if inputs is not None else x
        if h is None:
            raise ValueError("MLPClassifier needs `inputs` (or `x`): a float tensor [batch, input_size]")
        h = h.to(self.head.weight.dtype)
        hidden_states = [h]
        for layer in self.layers:
            h = layer(h)
            hidden_states.append(h)
        logits = self.head(h)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
        )


AutoConfig.register(MLPClassifierConfig.model_type, MLPClassifierConfig, exist_ok=True)
AutoModel.register(MLPClassifierConfig, MLPClassifier, exist_ok=True)
AutoModelForSequenceClassification.register(MLPClassifierConfig, MLPClassifier, exist_ok=True)
