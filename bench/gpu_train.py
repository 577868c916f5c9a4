"""QLoRA vs LoRA on a GPU: peak GPU memory and tokens/s of Shadowdesk's trainer on a 7B-class Llama
(random weights: no model hub is needed), one method per process so each peak is its own.

    bash bench/gpu_train.sh            # both methods, then the ratios
    python bench/gpu_train.py --method qlora --steps 8

The model is Llama-2-7B's shape (32 layers, hidden 4096, MLP 11008, 32 heads, vocab 32000) written
once in bfloat16 to --model-dir; rows are support-like questions and answers packed to --max-length.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.training import support_rows  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.trainer import train  # noqa: E402


def ensure_model(folder: Path, layers: int) -> Path:
    """A randomly initialised Llama of 7B shape with a small tokenizer, saved once."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").exists():
        return folder
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    )
    started = time.perf_counter()
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    # A word-level tokenizer with a chat template: the rows only need to become tokens.
    words = sorted(
        {w for row in support_rows(64) for w in (row.instruction + " " + row.output).split()}
    )
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<s> {{ m['role'] }} "
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }} </s>{% endgeneration %}"
        "{% else %}{{ m['content'] }} </s>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<s> assistant {% endif %}"
    )
    tokenizer.save_pretrained(folder)
    print(
        f"wrote a random {layers}-layer 7B-shape Llama in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["qlora", "lora"], required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument(
        "--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "llama7b-random"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit(
            "no CUDA device: this benchmark is for a GPU machine (bench/training.py is the CPU one)"
        )
    base = ensure_model(args.model_dir, args.layers)
    config = TrainConfig(
        method=args.method,
        max_steps=args.steps,
        max_length=args.max_length,
        batch_tokens=args.batch_tokens,
        compute_dtype="bfloat16",
        gradient_checkpointing=True,
        warmup_ratio=0.0,
    )
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        result = train(support_rows(2000), base, Path(out), config)
    print(
        json.dumps(
            {
                "method": args.method,
                "steps": result.steps,
                "tokens_per_s": result.tokens_per_s,
                "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "adapter_mib": round(result.artifact_bytes / 2**20, 1),
                "final_loss": result.final_loss,
                "gpu": torch.cuda.get_device_name(0),
            }
        )
    )


if __name__ == "__main__":
    main()
