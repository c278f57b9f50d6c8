"""GGUF checkpoints (llama.cpp's format, the way many users have their models): a `.gguf` file,
or a directory or hub id plus a file name, is dequantized by transformers (through the `gguf`
package) to the chosen dtype once, and cached as an ordinary safetensors model directory keyed
by the file's sha256 and the dtype. The next load reads that directory in seconds, and the
model's fingerprint is the same on every load.

    $DII_CACHE/gguf/<sha256[:16]>-<dtype>/   config.json, model.safetensors, tokenizer files,
                                              gguf.json (the source file, its hash, the dtype)

The directory is written in a temporary sibling and renamed into place only when complete, so
a conversion killed half-way leaves nothing that a later load would take; its leftovers are
cleared by the next conversion. A file that is not GGUF, is truncated, holds an architecture
transformers cannot dequantize, or whose tensors disagree with its metadata is one
InterventionError naming the file, and nothing is cached.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from interventions.errors import InterventionError
from interventions.io import sha256_file

GGUF_SUFFIX = ".gguf"
INFO_FILE = "gguf.json"
FIX = ("give a complete .gguf file (llama.cpp's format: re-download it if it was cut short), or a Hugging "
       "Face model folder with safetensors weights")


def is_gguf_spec(spec) -> bool:
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(GGUF_SUFFIX)


def cache_root() -> Path:
    """`$DII_CACHE/gguf` (default `~/.cache/dii-workbench/gguf`)."""
    return Path(os.environ.get("DII_CACHE") or "~/.cache/dii-workbench").expanduser() / "gguf"


def locate(spec: str | Path, gguf_file: str | None = None) -> Path:
    """The local path of the GGUF file: `spec` itself (a .gguf file), `spec / gguf_file` (a
    folder), or a hub download ("user/repo/file.gguf", or "user/repo" with gguf_file)."""
    spec = str(spec)
    if gguf_file is None:
        path = Path(spec).expanduser()
        if path.is_file():
            return path
        parts = spec.split("/")
        if spec.startswith(("/", ".", "~")) or len(parts) < 3 or path.parent.is_dir():
            raise InterventionError(f"{spec!r} does not exist; {FIX} (or 'user/repo/file.gguf' for the hub)")
        spec, gguf_file = "/".join(parts[:2]), "/".join(parts[2:])
    folder = Path(spec).expanduser()
    if folder.is_dir():
        path = folder / gguf_file
        if not path.is_file():
            have = sorted(p.name for p in folder.glob(f"*{GGUF_SUFFIX}"))
            raise InterventionError(f"{folder} has no {gguf_file!r}; GGUF files there: {have or 'none'}")
        return path
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(spec, gguf_file))
    except Exception as e:  # noqa: BLE001  (offline, no such repo or file: one message)
        raise InterventionError(f"could not fetch {gguf_file!r} from the hub repo {spec!r} "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); give a local "
                                ".gguf file, or check the repo id and the file name") from None


def check_file(path: Path) -> str:
    """Read the file's header and tensor table (the `gguf` package), so a file that is not GGUF
    or is cut short fails here, naming it; returns its architecture."""
    from gguf import GGUFReader

    if path.stat().st_size == 0:
        raise InterventionError(f"{path} is empty; {FIX}")
    try:
        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode("utf-8", "replace") if field is not None else "?"
    except Exception as e:  # noqa: BLE001  (the reader's own errors on a damaged file)
        why = "it is not a GGUF file" if "magic" in str(e).lower() else "it is truncated or damaged"
        raise InterventionError(f"{path} cannot be read as GGUF: {why} ({type(e).__name__}: {e}); {FIX}") from None
    _check_shapes(reader, arch, path)
    try:  # transformers' own list of the architectures it dequantizes (where this version exposes it)
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES as supported
    except ImportError:
        supported = None
    if supported is not None and arch.replace("-", "_") not in supported and arch not in supported:
        raise InterventionError(
            f"{path} could not be loaded: its architecture {arch!r} is one transformers cannot dequantize (it reads "
            f"{sorted(a for a in supported if a not in ('general', 'tokenizer'))}); convert the original checkpoint "
            "to a Hugging Face folder instead")
    return arch


def _check_shapes(reader, arch: str, path: Path) -> None:
    """The widths the metadata declares against the tensors that carry them, by llama.cpp's
    tensor names (the same for every architecture): the embeddings and the dense MLP."""
    def number(key):
        f = reader.fields.get(f"{arch}.{key}")
        return int(f.parts[f.data[0]][0]) if f is not None else None

    width, ff = number("embedding_length"), number("feed_forward_length")
    for t in reader.tensors:
        shape = [int(x) for x in t.shape]
        kind = t.name.rsplit(".", 2)[-2] if t.name.count(".") >= 2 else t.name.split(".")[0]
        need = {"token_embd": [width], "ffn_up": [width, ff], "ffn_gate": [width, ff], "ffn_down": [width, ff]}.get(kind, [])
        for n in need:
            if n is not None and n not in shape:
                raise InterventionError(
                    f"{path} could not be loaded: its tensors disagree with its metadata ({t.name} is {shape}, but "
                    f"{arch}.{'embedding_length' if n == width else 'feed_forward_length'} = {n}); the file was edited "
                    f"or damaged: {FIX}")


def converted(spec: str | Path, gguf_file: str | None = None, dtype: torch.dtype | None = None) -> Path:
    """The cached safetensors directory of a GGUF checkpoint at `dtype` (float32 by default),
    converting it on the first call."""
    from filelock import FileLock

    path = locate(spec, gguf_file)
    arch = check_file(path)
    dtype = dtype or torch.float32
    sha = sha256_file(path)
    final = cache_root() / f"{sha[:16]}-{str(dtype).removeprefix('torch.')}"
    if (final / INFO_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    (final.parent / ".locks").mkdir(exist_ok=True)
    with FileLock(str(final.parent / ".locks" / f"{final.name}.lock")):  # one process converts, another waits
        if (final / INFO_FILE).is_file():
            return final
        _clear_leftovers(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            try:
                _convert(path, arch, dtype, tmp)
            except OSError as e:  # a full disk: nothing half-written is kept, and the message says where
                raise InterventionError(f"cannot write the converted {path.name} to {final.parent} ({e.strerror or e});"
                                        " free some space there or set DII_CACHE to another folder") from None
            (tmp / INFO_FILE).write_text(json.dumps({
                "source": str(path.resolve()), "file": path.name, "size": path.stat().st_size, "sha256": sha,
                "architecture": arch, "dtype": str(dtype), "converted": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
            tmp.chmod(0o755)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _convert(path: Path, arch: str, dtype: torch.dtype, out: Path) -> None:
    """Dequantize through transformers, drop the quantizer (a dequantized model is an ordinary
    one, and save_pretrained refuses while it is attached), save model and tokenizer."""
    import transformers

    folder, name = str(path.parent), path.name
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its load report would precede our one message
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as e:  # noqa: BLE001  (unsupported architectures, shapes that disagree with the metadata)
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "not supported" in text:
            why = (f"its architecture {arch!r} is one transformers cannot dequantize ({text}); convert the original "
                   "checkpoint to a Hugging Face folder instead")
        elif any(w in text.lower() for w in ("mismatch", "shape", "validat", "divisible")):
            why = f"its tensors disagree with its metadata ({text}); the file was edited or damaged: {FIX}"
        else:
            why = f"{type(e).__name__}: {text}; {FIX}"
        raise InterventionError(f"{path} could not be loaded: {why}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _clear_leftovers(final: Path) -> None:
    """Temporary folders of conversions that died half-way (their process is gone: we hold the lock)."""
    for old in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(old, ignore_errors=True)
