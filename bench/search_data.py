"""The end-to-end search benchmark's data, made once with our causal package: the exact
counterfactual pairs `AlignmentSearch` trains and tests on (same seed, same examples kept),
as token ids, so pyvene trains and tests on the same ones (bench/peers/pyvene_search.py).

    python bench/search_data.py --out /tmp/search     # writes data.safetensors + meta.json
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import common  # noqa: E402
import search_task as st  # noqa: E402
from experiments.search import AlignmentSearch  # noqa: E402
from interventions import encode, load_model  # noqa: E402


def search_for(model, answers: list[str], n_train: int, n_test: int, loss_over: str = "vocabulary") -> AlignmentSearch:
    """The search both sides run (our side times exactly this)."""
    return AlignmentSearch(model, st.copy_task(answers), layers="all", positions=["last"], variables=["X"],
                           k=st.K, batch_size=st.BATCH, epochs=st.EPOCHS, lr=st.LR, n_train=n_train,
                           n_test=n_test, seed=0, controls=[], contrastive=False, loss_over=loss_over)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gpt2", help="gpt2 (GPT-2 small shape) or tiny")
    p.add_argument("--n-train", type=int, default=st.N_TRAIN)
    p.add_argument("--n-test", type=int, default=st.N_TEST)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    hf = common.build_model(args.model)
    answers = st.best_copied_words(hf)
    model = load_model(hf, device="cpu", tokenizer=common.word_tokenizer(hf.config.vocab_size), name=args.model)
    split = search_for(model, answers, args.n_train, args.n_test).split("main")
    ids = encode(model, split.task, split.inputs, "last").inputs["input_ids"]
    assert ids.shape[1] == st.SEQ, ids.shape
    tensors = {"answer_ids": split.answer_token_ids.cpu()}
    for name, rows in (("train", split.train_rows), ("test", split.test_rows)):
        tensors[f"{name}_base"] = ids[split.base_idx[rows]].contiguous()
        tensors[f"{name}_source"] = ids[split.src_idx[rows, 0]].contiguous()
        tensors[f"{name}_label"] = split.answer_token_ids[split.target[rows]].cpu()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "data.safetensors"))
    meta = {"model": args.model, "answers": answers, "n_train": args.n_train, "n_test": args.n_test,
            "n_train_kept": int(split.train_rows.numel()), "n_test_kept": int(split.test_rows.numel()),
            "model_accuracy": split.model_accuracy, "seq_len": st.SEQ, "n_layers": model.n_layers}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
