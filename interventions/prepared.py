"""What one base batch's suffix steps need, computed once by `SuffixRunner.prepare`: the
suffix tokens' inputs, the intervened and answer positions relative to the suffix start, the
base activations at the sites, and the model's KV prefix before the earliest intervened token.
`select` cuts minibatches (a row index into the prefix, no copy), `concat` joins chunk-wise
prepares, `stack` joins minibatches of cells trained together."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from interventions.errors import InterventionError
from interventions.positions import Batch


@dataclass
class Prepared:
    """What the suffix steps of one base batch need; `select` cuts minibatches."""

    inputs: dict[str, torch.Tensor]  # the suffix tokens' inputs (attention mask: full length)
    positions: torch.Tensor | None  # intervened index per example, relative to the suffix start
    answer_positions: torch.Tensor | None  # relative to the suffix start
    acts: dict[str, torch.Tensor]  # site key -> base activation [B, d] at each example's position
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer [B, heads, P, head_dim]
    prefix_len: int = 0
    # The rows of prefix_kv this batch stands for (None: all of them). `select` only narrows
    # it: copying every layer's prefix for a minibatch, and again into the step's cache, was
    # the largest memory a search used. The step gathers the rows of the layers it runs.
    kv_rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def select(self, idx) -> "Prepared":
        idx = torch.as_tensor(idx) if not isinstance(idx, slice) else torch.arange(len(self))[idx]
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        kv_rows = self.kv_rows  # the prefix is not copied: its row index is narrowed
        if self.prefix_kv is not None:
            kv_rows = idx if kv_rows is None else kv_rows[idx.to(kv_rows.device)]
        return self._per_row(lambda t: t[idx.to(t.device)], kv_rows=kv_rows)

    def _per_row(self, fn, **changes) -> "Prepared":
        """A copy with `fn` applied to every per-example tensor (inputs, positions, activations),
        and `changes` to the other fields."""
        each = lambda t: None if t is None else fn(t)  # noqa: E731
        return replace(self, inputs={k: each(v) for k, v in self.inputs.items()}, positions=each(self.positions),
                       answer_positions=each(self.answer_positions), acts={k: each(v) for k, v in self.acts.items()},
                       **changes)

    def layer_kv(self, layer: int, stand_in: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s prefix keys and values for this batch's rows; with `stand_in`, a
        zero tensor of their shape that takes no memory (for a layer no block will read)."""
        k, v = self.prefix_kv[layer]
        n = len(k) if self.kv_rows is None else len(self.kv_rows)
        if stand_in:
            return tuple(t.new_zeros(()).expand(n, *t.shape[1:]) for t in (k, v))
        if self.kv_rows is None:
            return k, v
        rows = self.kv_rows.to(k.device)
        return k[rows], v[rows]

    def with_prefix_rows(self) -> "Prepared":
        """The same batch with its prefix rows gathered (kv_rows None)."""
        if self.kv_rows is None:
            return self
        return replace(self, prefix_kv=[self.layer_kv(i) for i in range(len(self.prefix_kv))], kv_rows=None)

    @classmethod
    def concat(cls, pieces: list["Prepared"], batch: Batch) -> "Prepared":
        """Join chunk-wise prepares of one padded batch. Chunks may have kept different KV
        prefixes (their earliest intervened token differs): crop all to the shortest, since
        keys/values before it are the same, and cut the suffix inputs from the full batch."""
        if len(pieces) == 1:
            return pieces[0]
        pieces = [p.with_prefix_rows() for p in pieces]
        p_min = min(p.prefix_len for p in pieces)
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        acts = {k: torch.cat([p.acts[k] for p in pieces]) for k in pieces[0].acts}
        shift = lambda p, t: None if t is None else t + (p.prefix_len - p_min)  # noqa: E731
        positions = cat([shift(p, p.positions) for p in pieces])
        answer_positions = cat([shift(p, p.answer_positions) for p in pieces])
        if p_min > 0:
            n_layers = len(pieces[0].prefix_kv)
            prefix_kv = [(torch.cat([p.prefix_kv[i][0][:, :, :p_min] for p in pieces]),
                          torch.cat([p.prefix_kv[i][1][:, :, :p_min] for p in pieces])) for i in range(n_layers)]
        else:
            prefix_kv = None
        T = batch.seq_len
        inputs = {k: (v[:, p_min:] if (k != "attention_mask" and T is not None and v.dim() >= 2 and v.shape[1] == T) else v)
                  for k, v in batch.inputs.items()}
        if len({p.prefix_len for p in pieces}) == 1:
            inputs = {k: torch.cat([p.inputs[k] for p in pieces]) for k in pieces[0].inputs}
        return replace(pieces[0], inputs=inputs, positions=positions, answer_positions=answer_positions, acts=acts,
                       prefix_kv=prefix_kv, prefix_len=p_min)

    def stack_key(self) -> tuple:
        """Minibatches with equal keys stack into one batch (`stack`): the same prefix length
        and the same shapes beyond the batch dimension."""
        shapes = tuple((k, tuple(v.shape[1:])) for k, v in sorted(self.inputs.items()))
        return self.prefix_len, shapes, None if self.prefix_kv is None else tuple(self.prefix_kv[0][0].shape[1:])

    @classmethod
    def stack(cls, pieces: list["Prepared"]) -> "Prepared":
        """Minibatches of several prepares (cells trained together) as one batch, row after row.
        Their `stack_key`s must be equal."""
        if len({p.stack_key() for p in pieces}) != 1:
            raise InterventionError("these minibatches differ in prefix or shape and cannot share one forward")
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        first = pieces[0]
        if first.prefix_kv is not None and all(p.prefix_kv is first.prefix_kv for p in pieces):
            # Rows of one prepare (cells trained together): stack the row indices, not the prefix.
            dev = first.prefix_kv[0][0].device
            all_rows = lambda p: torch.arange(len(p), device=dev) if p.kv_rows is None else p.kv_rows.to(dev)  # noqa: E731
            kv = {"prefix_kv": first.prefix_kv, "kv_rows": torch.cat([all_rows(p) for p in pieces])}
        else:
            pieces = [p.with_prefix_rows() for p in pieces]
            kv = {"prefix_kv": None if first.prefix_kv is None else [
                (torch.cat([p.prefix_kv[i][0] for p in pieces]), torch.cat([p.prefix_kv[i][1] for p in pieces]))
                for i in range(len(first.prefix_kv))], "kv_rows": None}
        return replace(
            first,
            inputs={k: torch.cat([p.inputs[k] for p in pieces]) for k in first.inputs},
            positions=cat([p.positions for p in pieces]),
            answer_positions=cat([p.answer_positions for p in pieces]),
            acts={k: torch.cat([p.acts[k] for p in pieces]) for k in first.acts if all(k in p.acts for p in pieces)},
            **kv,
        )

    def to(self, device) -> "Prepared":
        mv = lambda t: t.to(device)  # noqa: E731
        return self._per_row(mv, prefix_kv=None if self.prefix_kv is None else [(mv(k), mv(v)) for k, v in self.prefix_kv],
                             kv_rows=None if self.kv_rows is None else mv(self.kv_rows))
