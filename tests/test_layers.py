"""The layering of docs/DESIGN.md, checked by import-linter against pyproject.toml's
[tool.importlinter] contracts: causal -> interventions -> experiments -> app with no
back-arrows, experiments' wings (search, finetune, export) apart on a shared core with the
CLI on top, and no import cycle among the modules of any package (a function-level import
counts too)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.stdout.count(" KEPT") == 3 and "BROKEN" not in proc.stdout


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in ("causal", "interventions", "experiments", "app")
            for p in (ROOT / pkg).rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these files (one concept each): {long}"
