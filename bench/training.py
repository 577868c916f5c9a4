"""Trainer throughput: Shadowdesk's trainer (packed rows, no padding) vs a plain transformers
`Trainer` + peft (rows padded per batch), same rows, same model, same LoRA, same run.

One command: `python bench/training.py` (options: --rows, --steps, --threads, --method).
Rows: questions and answers of varied length, like a support dataset. Both train LoRA r=16 on every
linear layer of the packaged SmolLM2 in fp32 on the CPU with gradient checkpointing. Throughput
counts real (non-padding) tokens, so padding shows up as lost speed. Prints tokens/s of each, the
ratio, peak memory and the adapter size.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.packaged_model import cached_hf_folder, packaged_gguf_path
from training.config import TrainConfig
from training.examples import IGNORE, encode_row
from training.rows import Row
from training.trainer import load_model, load_tokenizer, train

WORDS = (
    "lamp hub app schedule firmware reset button light colour scene battery warranty wifi "
    "router update brightness timer sunrise pairing bluetooth charger socket bulb dimmer"
).split()


def support_rows(n: int, seed: int = 0) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = " ".join(rng.choices(WORDS, k=rng.randint(5, 25)))
        a = " ".join(rng.choices(WORDS, k=rng.choice([8, 15, 30, 60, 120])))
        rows.append(Row(instruction=f"Question {i}: {q}?", output=a.capitalize() + "."))
    return rows


def baseline(
    rows: list[Row], base: Path, steps: int, batch: int, threads: int
) -> tuple[float, int]:
    """transformers Trainer + peft, rows padded to the longest of each batch."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(base)
    config = TrainConfig(method="lora", lora_dropout=0.0)
    model = load_model(base, config)
    features = []
    for row in rows:
        ex = encode_row(tokenizer, row, 512)
        features.append({"input_ids": ex.input_ids, "labels": ex.labels})
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=2e-4,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        gradient_checkpointing=False,  # load_model already enabled it
        remove_unused_columns=False,
        dataloader_drop_last=False,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    seen = min(len(features), steps * batch)
    real = sum(
        len(f["input_ids"])
        for f in (features * (steps * batch // len(features) + 1))[: steps * batch]
    )
    del seen
    return seconds, real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="Interleaved baseline/ours rounds (median ratio)."
    )
    args = parser.parse_args()
    base = cached_hf_folder(packaged_gguf_path(), Path.home() / ".cache" / "shadowdesk-bench")
    rows = support_rows(args.rows)
    batch = 4
    print(
        f"LoRA r=16 on SmolLM2-135M, fp32 CPU, {args.threads} threads, {args.rows} rows, "
        f"{args.steps} steps, {args.rounds} interleaved rounds"
    )
    ratios = []
    for round_ in range(1, args.rounds + 1):
        b_seconds, b_tokens = baseline(rows, base, args.steps, batch, args.threads)
        # Ours: the same number of real tokens per step on average (packed into 512-token rows).
        tokens_per_step = b_tokens / args.steps
        config = TrainConfig(
            method="lora",
            lora_dropout=0.0,
            max_length=512,
            batch_tokens=int(max(512, tokens_per_step)),
            max_steps=args.steps,
            torch_threads=args.threads,
            warmup_ratio=0.0,
        )
        with tempfile.TemporaryDirectory() as out:
            result = train(rows, base, Path(out), config)
        b_rate = b_tokens / b_seconds
        ratios.append(result.tokens_per_s / b_rate)
        print(
            f"round {round_}: baseline Trainer + peft (padded batches of {batch}) "
            f"{b_rate:6.1f} real tokens/s; shadowdesk (packed) {result.tokens_per_s:6.1f}; "
            f"ratio {ratios[-1]:.2f}x",
            flush=True,
        )
    print(f"median ratio: {statistics.median(ratios):.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak:.0f} MiB; adapter {result.artifact_bytes / 1e6:.1f} MB; "
        f"final loss {result.final_loss:.3f}"
    )


if __name__ == "__main__":
    main()
