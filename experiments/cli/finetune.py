"""`dii finetune` and `dii compare`: progress bars and tables around experiments.finetune."""

from __future__ import annotations

from experiments.cli.commands import NAME, OUT, RUNS_DIR, arg, command, target_of


def _bar_progress():
    """A progress callback drawing one tqdm bar per training (a new bar when `desc` changes),
    on rank 0 only; and a function that closes the last bar."""
    from tqdm.auto import tqdm

    from experiments.parallel import world

    state: dict = {"bar": None, "desc": None}

    def progress(desc: str, step: int, n_steps: int, loss: float) -> None:
        if state["bar"] is None or state["desc"] != desc:  # our own record: a disabled tqdm has no desc
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"], state["desc"] = tqdm(total=n_steps, desc=desc, leave=False,
                                               disable=not world().is_main), desc
        state["bar"].update(step - state["bar"].n)
        state["bar"].set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return progress, close


@command("finetune", "LoReFT/DiReFT (or peft, full) finetuning from a TOML config "
         "(torchrun -m experiments.cli finetune ... shares each step over processes)",
         arg("config", help="a finetune config, e.g. experiments/configs/finetune_price_tagging_shift.toml"),
         RUNS_DIR, NAME, OUT)
def finetune(args) -> int:
    from experiments.finetune import finetune as run_finetune
    from experiments.finetune import format_result, load_finetune_config
    from experiments.parallel import barrier, world

    config = load_finetune_config(args.config)
    progress, close = _bar_progress()
    try:
        result = run_finetune(config, progress=lambda s, n, loss: progress("finetune", s, n, loss),
                              out_dir=target_of(args, config.run_name))
    finally:
        close()
    if world().is_main:
        print(format_result(result))
    barrier()
    return 0


@command("compare", "ReFT vs PEFT: train every method with the same data, budget and seeds; one table",
         arg("config", help="a compare config, e.g. experiments/configs/compare_price_tagging.toml"), RUNS_DIR, NAME, OUT)
def compare(args) -> int:
    from experiments.finetune.compare import compare as run_compare
    from experiments.finetune.compare import format_summary, load_compare_config

    config = load_compare_config(args.config)
    progress, close = _bar_progress()
    try:
        result = run_compare(config, out_dir=target_of(args, config.run_name),
                             progress=lambda m, seed, s, n, loss: progress(f"{m} seed {seed}", s, n, loss))
    finally:
        close()
    print(format_summary(result.summary))
    print(f"comparison written to {result.path}")
    return 0
