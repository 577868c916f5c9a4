"""Training rows as token sequences: the base model's chat template, loss on assistant tokens only,
and packing without attention across rows.

Assistant spans are found by rendering the conversation up to each assistant turn (with the
generation prompt) and up to its end: the tokens between carry loss, everything else is -100. This
needs no `{% generation %}` markers in the template (SmolLM2's has none), and `encode_row` checks
that each rendering is a prefix of the whole, so a template that rewrites earlier turns fails loudly
instead of training on the wrong tokens.

Packed sequences restart `position_ids` at 0 for each row and carry no attention mask: transformers
then builds a block-diagonal causal mask from the positions, so a row never attends to another.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.rows import Row

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass(frozen=True)
class Packed:
    """One sequence of whole rows; positions restart at each row."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    rows: int


class TemplateError(ValueError):
    """The chat template does not render a conversation's turns as prefixes of the whole."""


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], *, generation: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=generation
    )
    ids = out["input_ids"] if hasattr(out, "keys") else out  # transformers 5 returns an encoding
    return list(ids)


def encode_row(tokenizer: Any, row: Row, max_length: int) -> Example:
    """The row's tokens with labels on its assistant turns only, cut to `max_length`."""
    messages = row.messages()
    ids = _render(tokenizer, messages, generation=False)
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:i], generation=True)
        end = _render(tokenizer, messages[: i + 1], generation=False)
        if ids[: len(start)] != start or ids[: len(end)] != end:
            raise TemplateError(
                "the chat template does not render earlier turns as a prefix of the conversation"
            )
        labels[len(start) : len(end)] = ids[len(start) : len(end)]
    return Example(ids[:max_length], labels[:max_length])


def pack(examples: Sequence[Example], max_length: int, *, packing: bool = True) -> list[Packed]:
    """Whole rows packed greedily into sequences of at most `max_length` tokens (one row per
    sequence without `packing`). Rows with no trained token are left out."""
    sequences: list[Packed] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    rows = 0
    for example in examples:
        if example.trained_tokens == 0:
            continue
        if rows and (not packing or len(ids) + len(example.input_ids) > max_length):
            sequences.append(Packed(ids, labels, positions, rows))
            ids, labels, positions, rows = [], [], [], 0
        ids = ids + example.input_ids
        labels = labels + example.labels
        positions = positions + list(range(len(example.input_ids)))
        rows += 1
    if rows:
        sequences.append(Packed(ids, labels, positions, rows))
    return sequences


def micro_batches(
    sequences: Sequence[Packed], per_batch: int, *, seed: int, epoch: int
) -> list[list[Packed]]:
    """Sequences shuffled for the epoch (reproducibly: a resumed run sees the same order), in
    micro-batches of `per_batch`."""
    order = list(sequences)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
    return batches


def collate(batch: Sequence[Packed], pad_id: int) -> dict[str, Any]:
    """Tensors for one micro-batch. Padding is a segment of its own (positions restart, no loss),
    so it neither attends to nor is attended by a row."""
    import torch

    width = max(len(p.input_ids) for p in batch)
    ids, labels, positions = [], [], []
    for p in batch:
        pad = width - len(p.input_ids)
        ids.append(p.input_ids + [pad_id] * pad)
        labels.append(p.labels + [IGNORE] * pad)
        positions.append(p.position_ids + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
    }
