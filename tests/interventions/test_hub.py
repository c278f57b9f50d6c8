"""Artifacts follow the Hub's conventions, offline: save_pretrained / from_pretrained round
trip to 1e-7 from a directory and from a pre-filled hub cache (HF_HUB_OFFLINE), the model
card carries every field a reader needs, and push_to_hub uploads exactly save_pretrained's
files (the hub client's calls replaced by a recorder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interventions import InterventionError, Subspace
from tests.interventions.test_artifact import make_subspace

CARD_FIELDS = ["library_name: \"dii-workbench\"", "base model:", "base model revision:", "fingerprint",
               "site:", "variables:", "k:", "task:", "hypothesis", "Interchange intervention accuracy",
               "Training config", "from_pretrained(REPO_OR_DIR"]


def subspace() -> Subspace:
    s = make_subspace(k=4, d=16, seed=3)
    s.model_name, s.task, s.hypothesis, s.site, s.variables = "openai-community/gpt2", "ioi", "output_position", \
        "L6.block_output.last", ["P"]
    s.extra = {"method": "das", "seed": 0, "base_model_revision": "607a30d783dfa663caf39e06633721c8d4cfcd7e",
               "iia_low": 0.91, "iia_high": 0.97, "n_test": 480, "floor": 0.5}
    s.iia = 0.945
    return s


def test_save_pretrained_round_trips_and_writes_a_card(tmp_path):
    original = subspace()
    original.save_pretrained(tmp_path / "s")
    loaded = Subspace.from_pretrained(tmp_path / "s")
    assert torch.allclose(loaded.rotation, original.rotation, atol=1e-7, rtol=0)
    card = (tmp_path / "s" / "README.md").read_text()
    for field in CARD_FIELDS:
        assert field in card, field
    assert 'base_model: "openai-community/gpt2"' in card and "607a30d783df" in card
    assert "0.945 [0.91, 0.97] (95% Wilson interval, n = 480)" in card and "floor 0.50" in card
    python = card.split("## Load it")[1].split("```python\n")[1].split("```")[0]
    assert len(python.strip().splitlines()) == 3  # how to load it, in three lines


def _fill_hub_cache(cache: Path, repo_id: str, files_from: Path, commit: str = "a" * 40) -> None:
    """The layout huggingface_hub's cache uses: models--user--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_from_pretrained_reads_a_prefilled_hub_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    original = subspace()
    original.save_pretrained(tmp_path / "s")
    _fill_hub_cache(tmp_path / "cache", "someone/ioi-position", tmp_path / "s")
    loaded = Subspace.from_pretrained("someone/ioi-position", cache_dir=tmp_path / "cache")
    assert torch.allclose(loaded.rotation, original.rotation, atol=1e-7, rtol=0)
    with pytest.raises(InterventionError, match="HF_HUB_OFFLINE=1"):
        Subspace.from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")
    with pytest.raises(InterventionError, match="neither a local directory nor a hub id"):
        Subspace.from_pretrained(tmp_path / "missing.dir")
    with pytest.raises(InterventionError, match="HF_HUB_OFFLINE=1"):  # a dot in a hub id is fine: it is looked up
        Subspace.from_pretrained("someone/qwen2.5-subspace", cache_dir=tmp_path / "cache")


class Recorder:
    """Stands in for huggingface_hub.HfApi: records what would be created and uploaded."""

    calls: list = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kw):
        Recorder.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, repo_id, folder_path, **kw):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        Recorder.calls.append(("upload_folder", repo_id, files))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


@pytest.fixture
def recorder(monkeypatch):
    import huggingface_hub

    Recorder.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    return Recorder


def test_push_to_hub_uploads_the_artifact_and_its_card(recorder, tmp_path):
    url = subspace().push_to_hub("someone/ioi-position")
    assert url == "https://huggingface.co/someone/ioi-position/commit/abc"
    (create, upload) = recorder.calls
    assert create[:2] == ("create_repo", "someone/ioi-position") and create[2]["exist_ok"]
    files = upload[2]
    assert set(files) == {"config.json", "subspace.safetensors", "README.md"}
    card = files["README.md"].decode()
    assert all(field in card for field in CARD_FIELDS[:-1])
    assert "Subspace.from_pretrained('someone/ioi-position', model=model)" in card
    (tmp_path / "s").mkdir()
    for name, data in files.items():
        (tmp_path / "s" / name).write_bytes(data)
    assert torch.allclose(Subspace.load(tmp_path / "s").rotation, subspace().rotation, atol=1e-7, rtol=0)
    with pytest.raises(InterventionError, match="like 'user/name'"):
        subspace().push_to_hub("no-slash")


def test_a_reft_artifact_follows_the_same_conventions(recorder, tmp_path):
    from interventions.reft_artifact import ReftInterventions
    from tests.experiments.test_reft_artifact import DATA, _perturbed
    from experiments.models import config_model_dir
    from interventions import load_model

    words = [w for line in DATA.read_text().splitlines() for v in json.loads(line).values() for w in v.split()]
    model = load_model(str(config_model_dir("gpt2-tiny", words, seed=0)), device="cpu")
    reft = _perturbed(model)
    reft.save_pretrained(tmp_path / "r")
    loaded = ReftInterventions.from_pretrained(tmp_path / "r", model=model)
    for (k1, a), (k2, b) in zip(reft.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.allclose(a, b, atol=1e-7, rtol=0)
    card = (tmp_path / "r" / "README.md").read_text()
    assert "rank: `4`" in card and "layers: `[0, 1]`" in card and model.fingerprint in card
    reft.push_to_hub("someone/reft")
    assert set(recorder.calls[-1][2]) == {"config.json", "interventions.safetensors", "README.md"}


def test_dii_export_pushes_with_the_runs_interval(recorder, tmp_path, capsys):
    from experiments.cli import main
    from experiments.search import AlignmentSearch
    from experiments.zoo import get_model

    AlignmentSearch(str(get_model("hierarchical_equality", progress=False)), "hierarchical_equality", layers=[0],
                    variables=["V1"], steps=2, n_train=60, n_test=40, controls=[]).run(run_dir=tmp_path / "runs" / "r")
    site = next((tmp_path / "runs" / "r" / "subspaces").iterdir()).name.split("__")[0]
    assert main(["export", "r", "--runs-dir", str(tmp_path / "runs"), "--site", site, "--variable", "V1",
                 "--out", str(tmp_path / "out"), "--push-to-hub", "someone/he-v1"]) == 0
    assert "pushed" in capsys.readouterr().out
    card = recorder.calls[-1][2]["README.md"].decode()
    assert "95% Wilson interval, n = " in card and "floor" in card and '"n_train": 60' in card
    exported = (tmp_path / "out" / "README.md").read_text()  # the same card; its load lines name the folder
    assert exported == card.replace("'someone/he-v1'", "REPO_OR_DIR")
