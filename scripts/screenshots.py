"""The README's screenshots of every app page, made the way a researcher uses the app: a search
on the default task with the form's default settings, a finetune from its subspace toward the
default changed rule, and a ReFT-versus-PEFT comparison over three seeds, then each page in
Debian's headless Chromium (the browser tests' helpers), saved to docs/screenshots/.

    .venv/bin/python scripts/screenshots.py            # about 3 minutes on 2 cores

Runs go to a temporary folder; zoo models come from the usual cache ($DII_CACHE)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "docs" / "screenshots"


def make_runs(runs: Path) -> dict[str, str]:
    """The runs the pages show, made through the same API the pages call."""
    from app.caches import DEFAULT_TASK
    from experiments.finetune.compare import CompareConfig, compare
    from experiments.search import SearchConfig
    from experiments.finetune.reuse import reuse_arms, run_arms
    from experiments.runs import load_run
    from experiments.search import AlignmentSearch

    task = DEFAULT_TASK
    search = SearchConfig(model=f"zoo:{task}", task=task, positions=["last", "a", "b", "c", "d"], steps=200,
                          controls=["random_rotation", "vanilla"], name=f"{task}-defaults")
    AlignmentSearch.from_config(search).run(run_dir=runs / search.run_name)
    run = load_run(runs / search.run_name)
    best = run.best("V1")
    sub = runs / search.run_name / "subspaces" / f"{best['site']}__V1"
    layer = json.loads((sub / "config.json").read_text())["layer"]
    arms = reuse_arms(sub, model=f"zoo:{task}", task=task, variant={"left_only": 1}, layers=[layer], rank=4,
                      positions="l1", steps=200, n_train=1000, eval_every=20)
    run_arms(arms, out_root=runs / "finetune-defaults", about={"search_run": run.name, "subspace": sub.name,
                                                               "variant": {"left_only": 1}})
    comparison = CompareConfig(finetune=dict(model=f"zoo:{task}", task=task, variant={"left_only": 1}, steps=100,
                                             n_train=1000, rank=4, lora_r=4, eval_every=10),
                               methods=["loreft", "direft", "lora", "prefix_tuning", "prompt_tuning"], seeds=[0, 1, 2],
                               name="compare-defaults")
    compare(comparison, runs_dir=runs)
    return {"run": run.name, "site": best["site"], "finetune_run": "finetune-defaults",
            "compare_run": "compare-defaults"}


def shoot(url: str, views: dict[str, str]) -> list[Path]:
    from tests.app.browser import chromium_page, idle, no_error_box, snapshot

    OUT.mkdir(parents=True, exist_ok=True)
    pages = [("causal_model", "", "1_causal_model.png"), ("alignment_search", "", "2_alignment_search.png"),
             ("results", f"?run={views['run']}&variable=V1&site={views['site']}", "3_results.png"),
             ("finetune", f"?run={views['run']}&finetune_run={views['finetune_run']}", "4_finetune.png"),
             ("compare", f"?compare_run={views['compare_run']}", "5_compare.png")]
    written = []
    with chromium_page("screenshots_last.png") as page:
        for path, query, name in pages:
            page.goto(f"{url}/{path}{query}")
            page.wait_for_selector("[data-testid=stMain] h1", timeout=120_000)
            idle(page, 180_000)
            page.wait_for_timeout(2500)  # plotly draws after the script ends
            idle(page, 180_000)
            page.mouse.move(5, 5)  # no hover label in the picture
            no_error_box(page)  # a picture of an error is no picture of the page
            shot = snapshot(page, name)
            shutil.copyfile(shot, OUT / name)
            written.append(OUT / name)
    return written


def main() -> None:
    from tests.app.browser import serve

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dii-screens-") as tmp:
        tmp = Path(tmp)
        views = make_runs(tmp / "runs")
        print(f"runs made in {time.monotonic() - started:.0f} s: {views}")
        with serve(tmp) as url:
            for path in shoot(url, views):
                print(f"wrote {path.relative_to(ROOT)}")
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
