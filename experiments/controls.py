"""Controls: cells whose rows sit in the same results table as the DAS rows.

- random_rotation: the same k per variable, a random rotation, no training. What a
  subspace of that size gives by chance.
- vanilla: the whole activation vector patched from the source (per variable set with one
  source; a joint set has no single source to patch from).
- untrained_model / <method>_disjoint: run as search cells (search.py), on the randomly
  initialised model, or on the split disjoint in input values.
- probe: a linear probe (logistic regression) on base site activations predicting each
  variable's value; its accuracy goes in `probe_accuracy`, `iia` stays empty.
"""

from __future__ import annotations

from interventions import VanillaPatch


def random_rotation(search, ctx, cell) -> list[dict]:
    module = search.new_rotation(ctx, cell.site, search.cell_generator(cell))
    module.eval()
    return ctx.evaluate_rows(cell.site, module, cell, k=search.config.k)


def vanilla(search, ctx, cell) -> list[dict]:
    patch = VanillaPatch()
    d = ctx.model.site_dim(cell.site)
    rows = []
    for var in search.variables:
        rows += ctx.evaluate_rows(cell.site, patch, cell, k=d, only_variable=var)
    return rows


def probe(search, ctx, cell, max_iter: int = 1000) -> list[dict]:
    """Held-out accuracy of predicting each variable's value (under the hypothesis, on the
    base input) from the base activation at the site; trained on train bases, tested on test bases."""
    from sklearn.linear_model import LogisticRegression

    hyp = search.hypothesis
    acts = ctx.site_acts(cell.site).float().cpu().numpy()
    train_inputs = sorted(set(ctx.base_idx[ctx.train_rows].tolist()))
    test_inputs = sorted(set(ctx.base_idx[ctx.test_rows].tolist()) - set(train_inputs))
    rows = []
    for var in search.variables:
        labels = [repr(hyp.run(ctx.inputs[i])[var]) for i in range(len(ctx.inputs))]
        y_train = [labels[i] for i in train_inputs]
        acc = None
        if test_inputs and len(set(y_train)) > 1:
            clf = LogisticRegression(max_iter=max_iter)
            clf.fit(acts[train_inputs], y_train)
            acc = float(clf.score(acts[test_inputs], [labels[i] for i in test_inputs]))
        elif test_inputs:  # one class in training: the probe predicts it
            acc = float(sum(labels[i] == y_train[0] for i in test_inputs) / len(test_inputs)) if y_train else None
        rows.append(ctx.row(cell, var, None, probe_accuracy=acc, k=int(acts.shape[1]),
                            n_train=len(train_inputs), n_test=len(test_inputs)))
    return rows


def chance_level(search) -> float:
    """IIA of always answering the most common counterfactual output on the test set."""
    _, test = search.datasets("random")
    counts = test.output_counts()
    return max(counts.values()) / max(1, sum(counts.values())) if counts else float("nan")


__all__ = ["random_rotation", "vanilla", "probe", "chance_level"]
