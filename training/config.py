"""One typed training configuration, read alike from YAML, the CLI and the API.

The defaults work for a small support dataset on the packaged SmolLM2 (CPU) and are sensible starting
points on a GPU; every field says what it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Method = Literal["qlora", "lora", "full"]

# All linear layers of a Llama-style block: QLoRA's finding is that adapting every one of them is
# what matches a full fine-tune (Dettmers et al. 2023, section 4).
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        "lora",
        description="qlora: 4-bit NF4 base (bitsandbytes) + LoRA; lora: 16/32-bit base + LoRA; "
        "full: every weight trains.",
    )
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: tuple[str, ...] = Field(
        LLAMA_LINEAR, min_length=1, description="Module names that get adapters."
    )
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="AdamW peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps warming up.")
    epochs: float = Field(3.0, gt=0, le=100, description="Passes over the training rows.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_tokens: int = Field(
        1024,
        ge=32,
        description="Tokens per micro-batch: rows are packed into sequences of max_length and "
        "batch_tokens // max_length of them make a micro-batch.",
    )
    max_length: int = Field(
        512, ge=32, le=131_072, description="Longest packed sequence; longer rows are cut."
    )
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    packing: bool = Field(
        True,
        description="Pack several rows into one sequence (no padding); rows never attend to each "
        "other (block-diagonal mask, positions restart per row).",
    )
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    compute_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Matmul dtype of the frozen base (QLoRA's compute dtype). bfloat16 halves "
        "memory on GPUs; float32 is the safe choice on CPUs.",
    )
    double_quant: bool = Field(
        True, description="QLoRA: quantise the quantisation constants too (~0.4 bit/param saved)."
    )
    checkpoint_every: int = Field(
        50, ge=1, description="Save a resumable checkpoint every this many optimizer steps."
    )
    seed: int = Field(0, description="Seed for initialisation, shuffling and dropout.")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (None: torch's default)."
    )


def load_config(path: Path) -> TrainConfig:
    """A config from a YAML file; ValueError with the field and reason when it is invalid."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from exc
