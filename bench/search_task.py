"""The end-to-end search benchmark's workload, shared by both sides (imports neither nnsight
nor the peers): a GPT-2-small-shape model (random weights, fixed seed) and a task it can do,
written as a user writes one (`template_task`), so our side runs `AlignmentSearch` itself.

The task: 16 word tokens "{a} t2 ... t15 {x}", answer x (one of 8 words). A randomly
initialised GPT-2 with tied embeddings repeats its last token often enough for that (its
residual stream keeps the token's embedding); the answer words are the 8 it repeats best.
Hypothesis: X = x, O = X; interchanging X at the last position makes the network answer the
source's x. Workload (issue 17): every layer at the last position, k = 16, batch 32, 5
epochs over 256 counterfactual pairs, IIA on 256 held-out pairs.
"""

from __future__ import annotations

import torch

from causal import CausalModel
from causal.tasks.template import template_task

SEQ = 16
N_TRAIN, N_TEST = 256, 256
K, BATCH, EPOCHS, LR = 16, 32, 5, 1e-2
# Word ids (words are "t<id>", common.word_tokenizer): the fixed body, the first word's
# values, and the candidates for the answer words (all below the tiny shape's 128).
BODY = [f"t{i}" for i in range(2, 2 + SEQ - 2)]
FILLERS = [f"t{i}" for i in range(16, 36)]
CANDIDATES = [f"t{i}" for i in range(40, 104)]


def copy_task(answer_words: list[str]):
    inputs = {"a": list(FILLERS), "x": list(answer_words)}
    model = CausalModel({**inputs, "X": list(answer_words), "O": list(answer_words)},
                        {"X": ["x"], "O": ["X"]}, {"X": lambda x: x, "O": lambda X: X}, name="copy")
    template = "{a} " + " ".join(BODY) + " {x}"
    return template_task("bench_copy", model, template, {w: f" {w}" for w in answer_words},
                         description="repeat the last word (the bench's end-to-end search task)")


def best_copied_words(hf_model, n: int = 8, seed: int = 0) -> list[str]:
    """The n candidate words this model repeats most reliably after the task's prefix."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([int(w[1:]) for w in CANDIDATES])
    prefix = torch.tensor([int(w[1:]) for w in FILLERS])[torch.randint(0, len(FILLERS), (len(ids) * 4,), generator=g)]
    body = torch.tensor([int(w[1:]) for w in BODY]).expand(len(prefix), -1)
    x = ids.repeat(4)
    with torch.no_grad():
        logits = hf_model(torch.cat([prefix[:, None], body, x[:, None]], 1)).logits[:, -1, ids]
    right = (ids[logits.argmax(-1)] == x).float().view(4, len(ids)).mean(0)
    margin = (logits.gather(1, torch.arange(len(x))[:, None] % len(ids)).squeeze(1)).view(4, len(ids)).mean(0)
    order = sorted(range(len(ids)), key=lambda i: (-float(right[i]), -float(margin[i])))
    return [CANDIDATES[i] for i in order[:n]]
