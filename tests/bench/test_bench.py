"""The bench's own machinery: shared workload helpers, the memory meter and FLOP counter,
the driver's ratios and failure handling, and that our side's script times a real DII
training step (its first loss equals a hand-built reference). The peers' side needs
bench/.venv-peers and is checked by test_crosscheck_with_peers when that venv exists."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import driver  # noqa: E402

PEERS_PY = BENCH / ".venv-peers" / "bin" / "python"


def test_reft_positions_are_first_f_and_last_l_prompt_tokens():
    assert common.reft_positions(48, 1, 1) == [0, 47]
    assert common.reft_positions(10, 2, 3) == [0, 1, 7, 8, 9]


def test_batches_are_deterministic_and_shaped():
    a = common.das_batches(100, 3, 4, 7, seed=5)
    b = common.das_batches(100, 3, 4, 7, seed=5)
    assert len(a) == 3
    for (x1, y1, z1), (x2, y2, z2) in zip(a, b):
        assert x1.shape == y1.shape == (4, 7) and z1.shape == (4,)
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(z1, z2)
        assert int(x1.max()) < 100
    ids, labels = common.reft_batches(100, 1, 2, 5, 3, seed=0)[0]
    assert ids.shape == (2, 8)
    assert (labels[:, :5] == -100).all() and torch.equal(labels[:, 5:], ids[:, 5:])


def test_emit_and_parse_round_trip(capsys):
    common.emit({"side": "ours", "x": 1.5})
    out = capsys.readouterr().out
    parsed = common.parse_result("noise\n" + out + "more noise\n")
    assert parsed["side"] == "ours" and parsed["x"] == 1.5 and parsed["device"] == "cpu"
    assert common.parse_result("no result here") is None


def test_peak_memory_sees_a_64_mib_allocation():
    """In a fresh process, as every bench side runs: on the CPU the meter reads the resident set,
    which memory an earlier test freed but the allocator kept would hide."""
    code = ("import torch, common\n"
            "with common.PeakMemory(torch.device('cpu')) as mem:\n"
            "    big = torch.ones(16 * 2**20)  # 64 MiB, every page touched\n"
            "    assert big[-1] == 1\n"
            "print(mem.peak_bytes)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=BENCH, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) >= 48 * 2**20


def test_count_flops_matches_the_matmul_formula():
    a, b = torch.randn(8, 32), torch.randn(32, 16)
    assert common.count_flops(lambda: a @ b) == 2 * 8 * 32 * 16
    fields = common.flops_fields(2_000_000, ms_per_step=2.0)
    assert fields["achieved_flops_per_s"] == pytest.approx(1e9)
    assert fields["share_of_peak"] is None  # no GPU here, no peak to compare with


def _fake_side(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"import json\n{body}\n")
    return str(path)


def test_compare_reports_ours_over_peer_and_survives_a_failing_side(tmp_path):
    peer = _fake_side(tmp_path, "peer.py", "print('BENCH_RESULT ' + json.dumps({'examples_per_s': 10.0, 'peak_mem_bytes': 400}))")
    ours = _fake_side(tmp_path, "ours.py", "print('BENCH_RESULT ' + json.dumps({'examples_per_s': 250.0, 'peak_mem_bytes': 100}))")
    row = driver.compare(driver.Comparison("fake", peer, ours, []), sys.executable, sys.executable)
    ratios = {m["metric"]: m["ratio"] for m in row["metrics"]}
    assert ratios == {"examples_per_s": pytest.approx(25.0), "peak_mem_bytes": pytest.approx(0.25)}
    assert "25.00x  better" in driver.table([row])

    broken = _fake_side(tmp_path, "broken.py", "raise SystemExit('boom')")
    row = driver.compare(driver.Comparison("fake", broken, ours, []), sys.executable, sys.executable)
    assert "error" in row["peer"] and "boom" in row["peer"]["tail"]
    assert row["ours"]["examples_per_s"] == 250.0
    assert all(m["ratio"] is None for m in row["metrics"])
    assert "peer FAILED" in driver.table([row])


def _run(capsys, script: str, *args: str) -> dict:
    """Our side's script in this process (the drivers run it as its own process)."""
    import importlib

    module = importlib.import_module(script.removesuffix(".py"))
    capsys.readouterr()
    module.main(list(args))
    return common.parse_result(capsys.readouterr().out)


def _reference_first_loss(layer: int, k: int, batch: int, seq: int) -> float:
    """The loss our DAS step must compute, built by hand: full forward of the base with
    h_b + R^T (R h_s - R h_b) at the layer's output on the last token, CE on the last logits."""
    from interventions import RotatedSubspace

    hf = common.build_model("tiny", torch.float32, seed=0)
    base, source, labels = common.das_batches(hf.config.vocab_size, 4, batch, seq, seed=0)[0]
    torch.manual_seed(0)
    rotation = RotatedSubspace(hf.config.n_embd, k).rotation.detach()
    block = hf.transformer.h[layer]
    grabbed = {}
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731  (tuple in older transformers)
    handle = block.register_forward_hook(lambda m, a, out: grabbed.__setitem__("h", first(out)[:, -1].clone()))
    with torch.no_grad():
        hf(source)
    handle.remove()
    hs = grabbed["h"]

    def dii(m, a, out):
        h = first(out).clone()
        hb = h[:, -1]
        h[:, -1] = hb + (hs @ rotation.T - hb @ rotation.T) @ rotation
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = block.register_forward_hook(dii)
    with torch.no_grad():
        logits = hf(base).logits[:, -1]
    handle.remove()
    return float(torch.nn.functional.cross_entropy(logits, labels))


def test_our_das_script_times_a_real_dii_step(capsys):
    r = _run(capsys, "ours_das.py", "--model", "tiny", "--layer", "1", "--batch", "8", "--seq", "6",
             "--warmup", "0", "--steps", "2", "--count-flops")
    assert r["side"] == "ours" and r["layers"] == [1]
    assert r["per_layer"][0]["first_loss"] == pytest.approx(_reference_first_loss(1, 16, 8, 6), abs=1e-5)
    assert r["flops_per_step"] > 0 and r["examples_per_s"] > 0 and r["peak_mem_bytes"] >= 0


def test_our_sweep_and_loreft_scripts_cover_every_layer_and_report_tokens(capsys):
    r = _run(capsys, "ours_das.py", "--model", "tiny", "--sweep", "--batch", "4", "--seq", "5", "--warmup", "0", "--steps", "1")
    assert [p["layer"] for p in r["per_layer"]] == [0, 1]
    assert r["total_s"] >= r["prepare_s"] > 0
    r = _run(capsys, "ours_loreft.py", "--model", "tiny", "--layers", "0,1", "--batch", "2", "--prompt-len", "6",
             "--response-len", "3", "--warmup", "0", "--steps", "2")
    assert r["positions"] == [0, 5]
    # R (d*r) + W (d*r) + b (r) per layer, d = 64, r = 4
    assert r["trainable_params"] == 2 * (2 * 64 * 4 + 4)
    assert math.isfinite(r["final_loss"])


@pytest.mark.skipif(not PEERS_PY.exists(), reason="bench/.venv-peers not created (bash bench/setup_peers.sh)")
def test_crosscheck_with_peers(tmp_path):
    proc = subprocess.run([str(PEERS_PY), str(BENCH / "crosscheck.py")], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = json.loads((tmp_path / "crosscheck.json").read_text())["checks"]
    for name in ("dii_module", "loreft_module", "dii_model", "loreft_model"):
        assert checks[name]["status"] == "ok", checks[name]


@pytest.mark.skipif(not PEERS_PY.exists(), reason="bench/.venv-peers not created (bash bench/setup_peers.sh)")
@pytest.mark.parametrize("script", ["pyreft_export_check.py", "pyreft_import_check.py", "mib_export_check.py"])
def test_artifacts_round_trip_with_the_peers_own_code(tmp_path, script):
    """Our export loads in pyreft 0.1.0, pyreft's own ReftModel.save loads through our import
    (each giving the other's logits to 1e-5), and an MIB featurizer rebuilt with pyvene's
    LowRankRotateLayer the way the track loads it projects like our subspace to 1e-6."""
    proc = subprocess.run([str(PEERS_PY), str(BENCH / script)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env={"DII_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_repeated_comparisons_alternate_sides_and_report_medians(tmp_path):
    """repeats = 3: peer, ours, peer, ours, peer, ours (one log shows the order), each metric
    the median of its side's runs, with the range."""
    log = tmp_path / "order.log"
    body = ("import json, sys; n = sum(1 for _ in open({log!r})) if __import__('os').path.exists({log!r}) else 0; "
            "open({log!r}, 'a').write('{side}\\n'); v = [{values}][sum(1 for l in open({log!r}) if l.strip() == '{side}') - 1]; "
            "print('BENCH_RESULT ' + json.dumps({{'examples_per_s': v, 'peak_mem_bytes': 1}}))")
    peer = _fake_side(tmp_path, "peer.py", body.format(log=str(log), side="peer", values="10.0, 30.0, 20.0"))
    ours = _fake_side(tmp_path, "ours.py", body.format(log=str(log), side="ours", values="100.0, 400.0, 300.0"))
    row = driver.compare(driver.Comparison("fake", peer, ours, [], repeats=3), sys.executable, sys.executable)
    assert log.read_text().split() == ["peer", "ours"] * 3
    m = next(m for m in row["metrics"] if m["metric"] == "examples_per_s")
    assert (m["peer"], m["ours"], m["ratio"]) == (20.0, 300.0, pytest.approx(15.0))
    assert m["peer_range"] == [10.0, 30.0] and m["ours_range"] == [100.0, 400.0] and m["runs"] == 3
    assert "median of 3" in driver.table([row])


def test_the_end_to_end_search_scripts_run_the_same_pairs(tmp_path, capsys):
    """search_data.py writes the pairs AlignmentSearch keeps; our side's whole search reads
    IIA on them at every layer (the tiny shape, 64 pairs)."""
    import search_data

    search_data.main(["--model", "tiny", "--n-train", "64", "--n-test", "64", "--out", str(tmp_path)])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["n_train_kept"] > 0 and len(meta["answers"]) == 8
    r = _run(capsys, "ours_search.py", "--data", str(tmp_path))
    assert r["layers"] == [0, 1] and r["n_train_kept"] == meta["n_train_kept"]
    assert all(0 <= x <= 1 for x in r["iia_per_layer"]) and r["total_s"] > 0
    assert r["steps"] == 2 * 5 * math.ceil(meta["n_train_kept"] / 32)


def test_the_readme_table_is_made_from_the_summary():
    """The README's CPU table is the committed summary's, regenerated by bench/readme_table.py."""
    import readme_table

    summary = json.loads(readme_table.SUMMARY.read_text())
    assert readme_table.table(summary) in (ROOT / "README.md").read_text()
    assert "load average" in readme_table.table(summary)


@pytest.mark.skipif(not PEERS_PY.exists(), reason="bench/.venv-peers not created (bash bench/setup_peers.sh)")
def test_the_bench_driver_runs_to_the_end_in_quick_mode(tmp_path):
    """`make bench`'s driver, every comparison and the scaling step on the tiny shape, writes
    its summary (it used to die at the scaling step, after every row had run)."""
    proc = subprocess.run([str(PEERS_PY), str(BENCH / "run_cpu.py"), "--quick", "--results", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "cpu_quick_summary.json").read_text())
    names = {r["name"] for r in summary["rows"]}
    assert {"das_layer6", "das_sweep_all_layers", "loreft", "loreft_vs_lora", "search_e2e", "iia_zoo_task"} <= names
    assert summary["scaling"]["points"] and summary["crosscheck"]["returncode"] == 0
    assert all(not r["errors"] for r in summary["rows"]) and "load_average_at_start" in summary
    assert isinstance(summary["memory_above_peer"], list)  # the rows whose peak memory is above the peer's
