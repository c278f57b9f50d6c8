"""Control: a linear probe (logistic regression) on base site activations predicting each
variable's value under the hypothesis; trained on train bases, tested on test bases.
Its accuracy goes in `probe_accuracy`; `iia` stays empty (a probe does not intervene)."""

from __future__ import annotations

from experiments.search.methods import register
from experiments.search.methods.base import AlignmentMethod, CellOutput


@register
class Probe(AlignmentMethod, role="control"):
    name = "probe"
    summary = "control: linear probe accuracy for each variable's value (decodable is not causal)"

    def run(self, cell, max_iter: int = 1000):
        from sklearn.linear_model import LogisticRegression

        split, hyp = cell.split, cell.split.hypothesis
        acts = split.site_acts(cell.site).float().cpu().numpy()
        train_inputs = split.train_base_inputs()
        test_inputs = sorted(set(split.base_idx[split.test_rows].tolist()) - set(train_inputs))
        rows = []
        for var in cell.variables:
            labels = [repr(hyp.run(split.inputs[i])[var]) for i in range(len(split.inputs))]
            y_train = [labels[i] for i in train_inputs]
            acc = None
            if test_inputs and len(set(y_train)) > 1:
                clf = LogisticRegression(max_iter=max_iter)
                clf.fit(acts[train_inputs], y_train)
                acc = float(clf.score(acts[test_inputs], [labels[i] for i in test_inputs]))
            elif test_inputs and y_train:  # one class in training: the probe predicts it
                acc = float(sum(labels[i] == y_train[0] for i in test_inputs) / len(test_inputs))
            rows.append(cell.row(var, None, probe_accuracy=acc, k=int(acts.shape[1]),
                                 n_train=len(train_inputs), n_test=len(test_inputs)))
        return CellOutput(rows=rows)
