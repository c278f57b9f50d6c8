"""The run store: one directory per run of any kind (search, finetune, compare, reuse), one
manifest schema, one lock, one status vocabulary, written so an interrupted run stays readable.

runs/<name>/
  manifest.json     kind, config and its hash, model fingerprint, versions, device, UTC times,
                    status (running | finished | interrupted | failed), pid and host
  run.lock          held (filelock) while a process writes the run: two never write one run,
                    and a "running" run whose lock is free died, so it reads "interrupted"
  search:   cells/<cell_key>.json (the source of truth), results.json/.csv, curves.json,
            subspaces/<site_key>__<variable>/ (Subspace artifacts)
  finetune: finetune.json, artifact/      compare: compare.json/.csv, curves.json
  reuse:    <arm>/ (a finetune run per arm)

`RunStore` (store.py) writes every file of a run; `Run` (run.py) reads every kind;
catalogue.py lists and deletes runs; schema.py holds the files' schemas both sides check.
"""

from experiments.runs.catalogue import delete_run, effective_status, list_runs, lock_is_held, summary_of
from experiments.runs.run import Run, load_run
from experiments.runs.schema import KINDS, STATUSES, read_manifest
from experiments.runs.store import (CSV_COLUMNS, NOT_IN_CSV, RunStopped, RunStore, ShardSink, rows_to_csv, run_dir,
                                    run_versions, runs_root, subspace_dirname, utc_now)

__all__ = ["Run", "RunStore", "ShardSink", "RunStopped", "KINDS", "STATUSES", "CSV_COLUMNS", "NOT_IN_CSV", "delete_run",
           "effective_status", "list_runs", "load_run", "lock_is_held", "read_manifest", "rows_to_csv", "run_dir",
           "run_versions", "runs_root", "subspace_dirname", "summary_of", "utc_now"]
