"""The finetune loss: cross-entropy on response tokens, with the LM head run on the
response rows only (exact, and most of the saving), one micro-step, and evaluation."""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Callable

import torch
from torch import nn

from experiments.finetune.data import Encoded


def response_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed CE over response tokens, number of correct tokens per row, response tokens per row."""
    pred, target = logits[:, :-1].float(), labels[:, 1:]
    loss = nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100,
                                       reduction="sum")
    mask = target != -100
    correct = ((pred.argmax(-1) == target) & mask).sum(1)
    return loss, correct, mask.sum(1)


# Models whose LM head output cannot be cut to the response rows (found out on first use).
FULL_HEAD_ONLY: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def response_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the loss is: the flat index (into the B*T hidden rows) of every position that
    predicts a response token, that token, and its example's row."""
    target = labels[:, 1:]
    rows, cols = (target != -100).nonzero(as_tuple=True)
    return rows * labels.shape[1] + cols, target[rows, cols], rows


@contextmanager
def head_on_rows(hf: nn.Module, flat_rows: torch.Tensor, n_rows: int):
    """While open, the model's LM head (`get_output_embeddings()`) is fed only the hidden rows
    `flat_rows` of its [B, T, d] input, so logits are [N, V] instead of [B, T, V]. Whatever the
    model does after its head (Gemma2's final logit softcapping, Cohere's logit scale) is
    elementwise per row and still applies. An input of another size (prompt tuning's virtual
    tokens) is left alone; `state["used"]` says whether the cut happened."""
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    state = {"used": False}
    if head is None:
        yield state
        return

    def cut(_module, args):
        h = args[0]
        if not torch.is_tensor(h) or h.dim() < 2 or h.shape[:-1].numel() != n_rows:
            return None
        state["used"] = True
        return (h.reshape(-1, h.shape[-1]).index_select(0, flat_rows.to(h.device)), *args[1:])

    handle = head.register_forward_pre_hook(cut)
    try:
        yield state
    finally:
        handle.remove()


def response_loss_terms(hf: nn.Module, forward: Callable[[], Any], labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`response_loss_sum` of `forward()`'s logits without computing logits the loss ignores:
    the LM head (a third of GPT-2 small's forward FLOPs) runs on the response tokens only and
    no [B, T, V] tensor is kept. Falls back to the full logits for a model whose output does
    not come out as one row per response token (remembered per model)."""
    B, T = labels.shape
    flat, target, rows = response_rows(labels)
    if hf not in FULL_HEAD_ONLY:
        with head_on_rows(hf, flat, B * T) as state:
            out = forward()
        logits = _output_logits(out)
        if state["used"] and logits.dim() == 2 and logits.shape[0] == flat.numel():
            return _row_loss_terms(logits, target.to(logits.device), rows.to(logits.device), B)
        FULL_HEAD_ONLY[hf] = True
        if state["used"]:  # the head was cut but the output is not one row per token: redo in full
            logits = _output_logits(forward())
    else:
        logits = _output_logits(forward())
    # prompt tuning prepends virtual tokens: keep the real positions
    return response_loss_sum(logits[:, -T:], labels)


def _output_logits(out) -> torch.Tensor:
    logits = getattr(out, "logits", None)
    return logits if logits is not None else (out[0] if isinstance(out, tuple) else out)


def _row_loss_terms(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, n_rows: int):
    logits = logits.float()
    loss = nn.functional.cross_entropy(logits, target, reduction="sum")
    hits = (logits.detach().argmax(-1) == target).long()
    correct = torch.zeros(n_rows, dtype=torch.long, device=logits.device).index_add_(0, rows, hits)
    return loss, correct, torch.bincount(rows, minlength=n_rows)


def train_micro_step(method, batch: Encoded, normaliser: torch.Tensor) -> torch.Tensor:
    """Forward, response-token loss and backward of one micro-batch (gradients accumulate);
    the loss is divided by `normaliser`, the optimizer step's response-token count. Returns
    the summed (undivided) loss, detached. The same step for `finetune` and bench/."""
    loss_sum, _, _ = method.loss_terms(batch)
    (loss_sum / normaliser).backward()
    return loss_sum.detach()


@torch.no_grad()
def evaluate(method, data: Encoded, batch_size: int, device) -> dict:
    method.eval()
    loss_sum, tokens, exact, tok_correct = 0.0, 0, 0, 0
    for i in range(0, len(data), batch_size):
        batch = to_device(data.rows(slice(i, i + batch_size)), device)
        loss, correct, count = method.loss_terms(batch)
        loss_sum += loss.item()
        tokens += int(count.sum())
        tok_correct += int(correct.sum())
        exact += int((correct == count).sum())
    method.train()
    return {"loss": loss_sum / max(tokens, 1), "accuracy": exact / len(data),
            "token_accuracy": tok_correct / max(tokens, 1)}


def to_device(batch: Encoded, device) -> Encoded:
    return Encoded(*(t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.labels, batch.prompt_lengths)))
