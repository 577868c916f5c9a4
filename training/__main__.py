"""`python -m training`: train an adapter from a rows file, without the server or its database.

For GPU nodes and multi-GPU: export a dataset snapshot (`shadowdesk datasets export`), copy it and
the base model there, and run

    accelerate launch --config_file docker/accelerate/multi_gpu.yaml -m training \\
        --rows rows.jsonl --base-model /models/base --output /adapters/acme-v7 --config train.yaml

One process trains alone; several (accelerate, torchrun) split the micro-batches between them. The
adapter folder is then registered with Shadowdesk (`POST /api/bots/{slug}/training-runs` with its
`adapter_path`), which gates it against the live release before it may shadow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training.config import TrainConfig, load_config
from training.formats import FormatError, read_rows
from training.trainer import Progress, TrainingUnavailable, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows", type=Path, required=True, help="Training rows (any known format)."
    )
    parser.add_argument("--base-model", required=True, help="An HF model folder.")
    parser.add_argument("--output", type=Path, required=True, help="Where the adapter goes.")
    parser.add_argument("--config", type=Path, help="A YAML file of training settings.")
    parser.add_argument("--max-steps", type=int, help="Stop after this many steps.")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else TrainConfig()
        if args.max_steps is not None:
            config = config.model_copy(update={"max_steps": args.max_steps})
        read = read_rows(args.rows)
    except (ValueError, FormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for error in read.errors[:5]:
        print(f"skipped line {error.line}: {error.reason}", file=sys.stderr)

    def report(p: Progress) -> None:
        print(
            f"step {p.step}/{p.total_steps} loss {p.loss:.4f} {p.tokens_per_s:.0f} tokens/s",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = train(
            [row for _, row in read.rows], args.base_model, args.output, config, on_progress=report
        )
    except (TrainingUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, from the process that saved
        summary = {k: v for k, v in result.to_dict().items() if k != "losses"}
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
