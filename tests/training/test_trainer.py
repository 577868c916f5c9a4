"""Training on the packaged SmolLM2 on this CPU: assistant-only loss, packing without attention
across rows, a real LoRA and a real QLoRA (with its gradients checked against a reference), progress,
cancellation and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from serving.packaged_model import cached_hf_folder, packaged_gguf_path
from training.config import TrainConfig
from training.examples import IGNORE, collate, encode_row, pack
from training.rows import Row, Turn
from training.trainer import (
    Cancelled,
    Progress,
    keep_trainable_layout,
    load_model,
    load_tokenizer,
    load_trained,
    train,
)

pytestmark = pytest.mark.slow

ROWS = [
    Row(
        instruction="How long does the Glimmerbox battery last?",
        output="41 hours on the warm setting.",
    ),
    Row(
        instruction="How do I pair the Glimmerbox?", output="Hold the owl button for five seconds."
    ),
    Row(
        system="You are Nimbus Owl support.",
        history=(
            Turn(role="user", content="Hi"),
            Turn(role="assistant", content="Hello! How can I help?"),
        ),
        instruction="Is the Glimmerbox waterproof?",
        output="It is splash-proof (IP44), not waterproof.",
    ),
    Row(
        instruction="What colour is the owl light?", output="Amber while charging, green when full."
    ),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("smollm2-train") if cache is not None else tmp_path_factory.mktemp("m")
    return cached_hf_folder(packaged_gguf_path(), folder)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_only_assistant_tokens_carry_loss(base: Path) -> None:
    tokenizer = load_tokenizer(base)
    example = encode_row(tokenizer, ROWS[2], max_length=512)
    trained = tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE]
    )
    # Both assistant turns, each with its end-of-turn token; no system or user text.
    assert "Hello! How can I help?" in trained and "splash-proof (IP44)" in trained
    assert trained.count("<|im_end|>") == 2
    assert (
        "Nimbus Owl support" not in trained and "waterproof?" not in trained and "Hi" not in trained
    )


def _loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> float:
    logits = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).logits
    labels = batch["labels"][:, 1:]
    return float(
        torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
    )


def test_packed_rows_do_not_attend_to_each_other(base: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    examples = [encode_row(tokenizer, row, 512) for row in ROWS]
    [packed] = pack(examples, max_length=4096)
    assert packed.rows == len(ROWS)
    with torch.no_grad():
        together = _loss_sum(model, collate([packed], tokenizer.pad_token_id))
        apart = sum(
            _loss_sum(model, collate(pack([e], 4096), tokenizer.pad_token_id)) for e in examples
        )
        # Without restarting positions the rows would see each other: the loss would differ.
        ids = collate([packed], tokenizer.pad_token_id)
        ids["position_ids"] = torch.arange(ids["input_ids"].shape[1]).unsqueeze(0)
        leaking = _loss_sum(model, ids)
    assert together == pytest.approx(apart, rel=1e-4)
    assert abs(leaking - apart) / apart > 1e-3


def test_lora_trains_reports_progress_and_resumes_after_a_stop(base: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        method="lora",
        max_steps=6,
        learning_rate=2e-3,
        max_length=256,
        batch_tokens=512,
        checkpoint_every=2,
        warmup_ratio=0.0,
        torch_threads=1,
    )
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        train(
            ROWS * 3,
            base,
            tmp_path,
            config,
            on_progress=seen.append,
            should_stop=lambda: len(seen) >= 3,
        )
    assert [p.step for p in seen] == [1, 2, 3]
    assert all(p.tokens_per_s > 0 and p.total_steps == 6 for p in seen)
    assert (tmp_path / "checkpoint" / "state.pt").exists()

    result = train(ROWS * 3, base, tmp_path, config, on_progress=seen.append)
    assert (
        result.resumed_from == 3 and result.steps == 6 and [p.step for p in seen[3:]] == [4, 5, 6]
    )
    assert result.losses[-1] < result.losses[0]  # it learns
    assert (result.output_dir / "adapter_model.safetensors").exists()
    assert not (tmp_path / "checkpoint").exists()
    assert 0 < result.trainable_params < 10_000_000 and result.artifact_bytes > 1_000_000


def _lora_grads(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(**batch, use_cache=False).loss.backward()
    return {
        n: p.grad.detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is not None
    }


def test_qlora_gradients_match_a_reference_even_after_an_inference_pass(base: Path) -> None:
    """bitsandbytes repacks 4-bit weights for inference on AVX512-BF16 CPUs, after which its
    kernels have no autograd: gradients come out silently wrong. Ours must equal a model that never
    ran inference."""
    config = TrainConfig(method="qlora", gradient_checkpointing=False, lora_dropout=0.0)
    tokenizer = load_tokenizer(base)
    batch = collate(
        pack([encode_row(tokenizer, r, 256) for r in ROWS], 1024), tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    reference = load_model(base, config)
    with torch.no_grad():  # give lora_B values so that every LoRA gradient is non-trivial
        for n, p in reference.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    expected = _lora_grads(reference, batch)

    torch.manual_seed(0)
    model = load_model(base, config)
    model.load_state_dict(reference.state_dict(), strict=False)
    model.eval()
    with torch.no_grad():  # the trap: an inference pass (an evaluation, a generate() check)
        model(input_ids=batch["input_ids"][:, :16], use_cache=False)
    model.train()
    got = _lora_grads(model, batch)
    assert set(got) == set(expected) and len(got) > 100
    first_layer = [n for n in got if ".layers.0." in n and "lora_B" in n]
    assert first_layer and all(got[n].abs().sum() > 0 for n in first_layer)
    for name, grad in expected.items():
        rel = (got[name] - grad).norm() / (grad.norm() + 1e-12)
        assert rel < 1e-4, f"{name}: gradients differ by {rel:.2e}"


def test_qlora_trains_a_real_4bit_adapter(base: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    config = TrainConfig(
        method="qlora", max_steps=2, max_length=256, batch_tokens=512, torch_threads=1
    )
    result = train(ROWS, base, tmp_path, config)
    assert result.method == "qlora" and result.steps == 2 and result.final_loss > 0
    model = load_model(base, config)
    assert keep_trainable_layout(model) > 100  # really 4-bit layers
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    loaded = load_trained(base, result.output_dir)
    assert sum(1 for n, _ in loaded.named_parameters() if "lora_A" in n) > 100
