"""The finetune wing: LoReFT/DiReFT (ours) and the peft baselines on a frozen model.

- `FinetuneConfig`, `load_finetune_config` (config.py): the config `dii finetune` reads;
- `finetune()` (train.py): the loop, `FinetuneResult`;
- data.py, loss.py, methods.py: the examples, the response-token loss, what trains;
- compare.py: every method with the same data, budget and seeds (`dii compare`);
- reuse.py: LoReFT from a DAS subspace against a random start.
"""

from experiments.finetune.config import (METHODS, PEFT_METHODS, VARIANT_FLAGS, VARIANTS, FinetuneConfig,
                                         load_finetune_config)
from experiments.finetune.data import (Encoded, Example, encode_examples, jsonl_examples, read_jsonl_pairs,
                                       task_examples, task_variant, words_of)
from experiments.finetune.loss import evaluate, response_loss_sum, train_micro_step
from experiments.finetune.methods import build_method
from experiments.finetune.train import FinetuneResult, finetune, format_result

__all__ = ["METHODS", "PEFT_METHODS", "VARIANTS", "VARIANT_FLAGS", "Encoded", "Example", "FinetuneConfig",
           "FinetuneResult", "build_method", "encode_examples", "evaluate", "finetune", "format_result",
           "jsonl_examples", "load_finetune_config", "read_jsonl_pairs", "response_loss_sum", "task_examples",
           "task_variant", "train_micro_step", "words_of"]
