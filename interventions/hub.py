"""The Hugging Face Hub's conventions for the workbench's artifacts (a `Subspace`, a ReFT
artifact): `save_pretrained` writes the artifact plus a model card (README.md with the Hub's
YAML metadata), `from_pretrained` reads a local directory or a hub id through
`huggingface_hub.snapshot_download` (so HF_HUB_OFFLINE, HF_HOME and the cache behave as
everywhere else), and `push_to_hub` uploads what `save_pretrained` writes.

An artifact takes part by offering `save(directory)` and `card_fields() -> dict`; the card
is built from those fields plus any the caller adds (an IIA interval, a training config).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from interventions.errors import InterventionError
from interventions.io import atomic_write_text

CARD_NAME = "README.md"
LIBRARY_NAME = "dii-workbench"


def _yaml_value(value: Any) -> str:
    # JSON is valid YAML for strings, numbers, booleans and lists: no YAML writer needed.
    return json.dumps(value)


def model_card(fields: dict[str, Any]) -> str:
    """A model card: YAML metadata (library, base model, tags), then the provenance, what the
    artifact is, its IIA, its training config and how to load it."""
    base = fields.get("base_model") or ""
    meta = {"library_name": LIBRARY_NAME, "tags": ["causal-abstraction", "interpretability", *fields.get("tags", [])]}
    if base and not Path(base).is_absolute():  # a hub id; a local path is no base_model the Hub can link
        meta["base_model"] = base
    lines = ["---", *(f"{k}: {_yaml_value(v)}" for k, v in meta.items()), "---", "",
             f"# {fields.get('title', 'dii-workbench artifact')}", "", fields.get("summary", ""), "",
             "## Provenance", "",
             f"- base model: `{base or 'unknown'}`",
             f"- base model revision: `{fields.get('base_model_revision') or 'not recorded (a local model)'}`",
             f"- base model fingerprint (sha256 of its weights): `{fields.get('model_fingerprint') or 'unknown'}`",
             f"- task: `{fields.get('task') or 'unknown'}`, hypothesis: `{fields.get('hypothesis') or 'unknown'}`",
             f"- written by {LIBRARY_NAME} {fields.get('library_version', 'unknown')}", "",
             "## What it is", ""]
    lines += [f"- {k}: `{v}`" for k, v in fields.get("what", {}).items()]
    lines += ["", "## Interchange intervention accuracy", "", fields.get("iia_text") or "not recorded", "",
              "## Training config", "", "```json", json.dumps(fields.get("training_config") or {}, indent=2,
                                                                 sort_keys=True, default=str), "```", "",
              "## Load it", "", "```python",
              *(line.replace("REPO_OR_DIR", repr(fields["repo_id"])) if fields.get("repo_id") else line
                for line in fields.get("load_lines", [])), "```", ""]
    return "\n".join(lines)


def iia_text(iia, low=None, high=None, n=None, floor=None) -> str:
    """'0.996 [0.99, 1.00] (95% Wilson interval, n = 500; floor 0.49)', as far as known."""
    if iia is None:
        return "not recorded"
    text = f"{float(iia):.3f}"
    if low is not None and high is not None:
        text += f" [{float(low):.2f}, {float(high):.2f}] (95% Wilson interval" + (f", n = {n}" if n else "") + ")"
    if floor is not None:
        text += f"; floor {float(floor):.2f} (the best trivial rule on the same test examples)"
    return text


def save_pretrained(artifact, directory: str | os.PathLike, card: dict[str, Any] | None = None) -> Path:
    """The artifact's own files plus README.md (its model card)."""
    directory = Path(directory)
    artifact.save(directory)
    atomic_write_text(directory / CARD_NAME, model_card({**artifact.card_fields(), **(card or {})}))
    return directory


def snapshot(repo_or_dir: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory as is; otherwise the hub snapshot of repo `repo_or_dir` at `revision`."""
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    repo = str(repo_or_dir)
    from interventions.loading import HUB_ID

    if repo.count("/") != 1 or not HUB_ID.match(repo):  # 'Qwen/Qwen2.5-0.5B' has a dot and is an id
        raise InterventionError(f"{repo!r} is neither a local directory nor a hub id like 'user/name'")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo, revision=revision, cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001  (network, auth, offline cache misses: one message)
        raise InterventionError(
            f"could not fetch {repo!r}{f' at {revision}' if revision else ''} from the Hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); check the id and your login, or with HF_HUB_OFFLINE=1 "
            "make sure it is in the cache") from None


class HubArtifact:
    """save_pretrained / from_pretrained / push_to_hub for an artifact class that offers
    save(dir), card_fields() and the classmethod load_artifact(dir, model=, allow_fingerprint_mismatch=)."""

    def save_pretrained(self, directory: str | os.PathLike, card: dict[str, Any] | None = None) -> Path:
        """save() plus a model card (README.md) in the Hub's conventions."""
        return save_pretrained(self, directory, card)

    @classmethod
    def from_pretrained(cls, repo_or_dir: str | os.PathLike, model: Any = None, revision: str | None = None,
                        allow_fingerprint_mismatch: bool = False, cache_dir: str | os.PathLike | None = None):
        """A local directory, or a hub id fetched with huggingface_hub (its cache and HF_HUB_OFFLINE apply)."""
        return cls.load_artifact(snapshot(repo_or_dir, revision, cache_dir), model=model,
                                 allow_fingerprint_mismatch=allow_fingerprint_mismatch)

    def push_to_hub(self, repo_id: str, card: dict[str, Any] | None = None, **kwargs) -> str:
        """Upload save_pretrained's files to model repo `repo_id`; the commit URL."""
        return push_to_hub(self, repo_id, card, **kwargs)


def push_to_hub(artifact, repo_id: str, card: dict[str, Any] | None = None, private: bool = False,
                token: str | None = None, commit_message: str | None = None) -> str:
    """Create (or reuse) the model repo and upload what save_pretrained writes; the commit URL."""
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InterventionError(f"push_to_hub needs a model repo id like 'user/name', not {repo_id!r}")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="dii-push-") as tmp:
        save_pretrained(artifact, tmp, {**(card or {}), "repo_id": repo_id})  # the card's load lines name the repo
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model",
                                     commit_message=commit_message or f"Upload {type(artifact).__name__} with {LIBRARY_NAME}")
        except Exception as e:  # noqa: BLE001  (network, auth, permissions: one message)
            raise InterventionError(f"could not push to {repo_id!r} ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}); log in with `hf auth login` "
                                    "or pass token=, and check the repo name") from None
    return str(getattr(info, "commit_url", info))
