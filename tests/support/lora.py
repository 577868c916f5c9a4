"""LoRA adapters with random (non-zero) weights for tests: each visibly changes the answers of the
packaged SmolLM2, so which adapter answered can be told from the text."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


def smollm2_hf_folder(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged SmolLM2 as an HF folder, converted once into pytest's cache."""
    from serving.packaged_model import cached_hf_folder, packaged_gguf_path

    cache = getattr(config, "cache", None)
    root = cache.mkdir("smollm2-hf") if cache is not None else tmp_path_factory.mktemp("hf")
    return cached_hf_folder(packaged_gguf_path(), root)


def random_adapters(
    base: Path,
    names: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    *,
    alpha: int,
    target_modules: list[str],
    rank: int = 8,
) -> dict[str, Path]:
    """One adapter per name (seeded 1, 2, …), saved with peft; name -> folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    made: dict[str, Path] = {}
    for seed, name in enumerate(names, start=1):
        model = AutoModelForCausalLM.from_pretrained(base)
        torch.manual_seed(seed)
        lora = LoraConfig(
            r=rank, lora_alpha=alpha, target_modules=target_modules, init_lora_weights=False
        )
        with warnings.catch_warnings():  # peft names transformers 5's checkpointing the old way
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, lora)
        folder = tmp_path_factory.mktemp(name)
        peft_model.save_pretrained(folder)
        made[name] = folder
    return made
