"""The training planner: the method rules users rely on, and estimates checked against published
figures (QLoRA 65B on a 48 GB GPU; mixed-precision AdamW at 18 bytes per parameter)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.planner import (
    METHODS,
    Method,
    Plan,
    PlanInput,
    estimate,
    parse_size,
    plan_training,
    render,
)

GB_48 = 48e9 / 2**30  # the QLoRA paper's "48GB GPU", in GiB


def plan(**fields: object) -> Plan:
    return plan_training(PlanInput.model_validate(fields))


def rules(p: Plan) -> set[str]:
    return {r.rule for r in p.reasons}


def text(p: Plan) -> str:
    return " ".join(r.text for r in p.reasons)


@pytest.mark.parametrize("memory", [None, 24.0, 80.0])
def test_small_dataset_on_7b_is_lora_or_qlora_never_full(memory: float | None) -> None:
    p = plan(rows=5_000, params="7B", gpu_memory_gib=memory)
    assert p.recommended in ("lora", "qlora")
    assert "data-size" in rules(p) and "50,000" in text(p)
    assert any(s.endswith("arxiv.org/abs/2405.09673") for s in p.sources)


def test_small_dataset_never_full_even_when_it_fits() -> None:
    p = plan(rows=5_000, params="1B", gpu_memory_gib=80)
    assert p.estimates["full"].fits is True
    assert p.recommended == "lora"


def test_large_dataset_on_1b_with_80_gib_recommends_full() -> None:
    p = plan(rows=200_000, params="1B", gpu_memory_gib=80)
    assert p.estimates["full"].fits is True
    assert p.recommended == "full"
    assert "adapter" not in rules(p)


def test_large_dataset_falls_back_to_lora_when_full_does_not_fit() -> None:
    p = plan(rows=200_000, params="8B", gpu_memory_gib=80)
    assert p.recommended == "lora"
    assert "full needs" in text(p) and "GPUs with FSDP" in text(p)


def test_qlora_of_30b_needs_about_what_lora_of_13b_does() -> None:
    pairs = [
        (PlanInput(rows=1, params="30B"), PlanInput(rows=1, params="13B")),
        # LLaMA-33B and LLaMA-13B with their real shapes
        (
            PlanInput(rows=1, params="32.5B", hidden_size=6656, layers=60),
            PlanInput(rows=1, params="13B", hidden_size=5120, layers=40),
        ),
    ]
    for big, small in pairs:
        qlora_30b = estimate(big, "qlora").total_gib
        lora_13b = estimate(small, "lora").total_gib
        assert qlora_30b <= lora_13b
        assert abs(qlora_30b - lora_13b) / lora_13b <= 0.3


def test_lora_budget_suggests_a_bigger_base_under_qlora() -> None:
    p = plan(rows=20_000, params="8B", gpu_memory_gib=24)
    assert p.recommended == "lora"
    assert "bigger-base" in rules(p)
    # the QLoRA paper fine-tuned a 33B model on a 24 GB GPU
    assert "up to ~3" in text(p)


def test_70b_with_48_gib_only_qlora_fits() -> None:
    p = plan(rows=20_000, params="70B", gpu_memory_gib=48)
    assert p.estimates["qlora"].fits is True
    assert p.estimates["lora"].fits is False
    assert p.estimates["full"].fits is False
    assert p.recommended == "qlora"
    assert "bigger-base" in rules(p)


def test_nothing_fits_recommends_qlora_with_advice() -> None:
    p = plan(rows=20_000, params="70B", gpu_memory_gib=24)
    assert not any(e.fits for e in p.estimates.values())
    assert p.recommended == "qlora"
    advice = next(r.text for r in p.reasons if r.rule == "nothing-fits")
    assert "Nothing fits" in advice
    for hint in ("sequence length 512", "micro-batch 1", "GPUs", "smaller base"):
        assert hint in advice


@pytest.mark.parametrize("memory", [None, 0.0])
def test_cpu_only_recommends_fp32_lora(memory: float | None) -> None:
    p = plan(rows=5_000, params="134.5M", gpus=0 if memory is None else 1, gpu_memory_gib=memory)
    assert p.recommended == "lora"
    assert p.estimates["qlora"].fits is False
    assert p.estimates["lora"].fits is None
    cpu = next(r.text for r in p.reasons if r.rule == "cpu")
    assert "slow" in cpu and "fp32" in cpu and "GPU" in cpu


def test_unknown_memory_leaves_fits_unknown() -> None:
    p = plan(rows=5_000, params="7B")
    assert all(p.estimates[m].fits is None for m in METHODS)
    assert "memory" in rules(p)


def test_tiny_dataset_gets_a_warning() -> None:
    assert "Only 150 rows" in text(plan(rows=150, params="1B"))
    assert "Only" not in text(plan(rows=2_000, params="1B"))


def test_several_gpus_shard_the_states() -> None:
    one = PlanInput(rows=200_000, params="8B", gpu_memory_gib=80)
    four = one.model_copy(update={"gpus": 4})
    assert estimate(four, "full").total_gib < estimate(one, "full").total_gib / 3
    p = plan_training(four)
    assert p.recommended == "full" and "multi-gpu" in rules(p)


SIZES = ["135M", "500M", "1B", "3B", "7B", "13B", "30B", "70B", "405B"]


@pytest.mark.parametrize("method", METHODS)
def test_more_parameters_need_more_memory(method: Method) -> None:
    totals = [estimate(PlanInput(rows=1, params=s), method).total_gib for s in SIZES]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)


@pytest.mark.parametrize("memory", [None, 0.0, 16.0, 24.0, 48.0, 80.0])
@pytest.mark.parametrize("size", ["135M", "1B", "8B", "70B"])
def test_more_rows_never_make_full_less_recommended(memory: float | None, size: str) -> None:
    ranks = [
        ("full", "lora", "qlora").index(
            plan(rows=r, params=size, gpu_memory_gib=memory).recommended
        )
        for r in (0, 100, 1_000, 10_000, 49_999, 50_000, 200_000, 5_000_000)
    ]
    full_seen = False
    for rank in ranks:
        full_seen = full_seen or rank == 0
        assert not full_seen or rank == 0


def test_published_figures() -> None:
    # QLoRA paper: a 65B model fine-tuned on one 48 GB GPU (short sequences, micro-batch 1).
    llama_65b = PlanInput(rows=10_000, params="65.2B", hidden_size=8192, layers=80, seq_len=512)
    assert estimate(llama_65b, "qlora").total_gib <= GB_48
    assert (
        estimate(
            llama_65b.model_copy(update={"hidden_size": None, "layers": None}), "qlora"
        ).total_gib
        <= GB_48
    )
    # HF "Model training anatomy": mixed-precision AdamW, 18 bytes per parameter plus activations.
    full_7b = estimate(PlanInput(rows=100_000, params="7B", seq_len=512), "full")
    assert full_7b.total_gib > 100
    assert full_7b.weights_gib + full_7b.gradients_optimizer_gib == pytest.approx(
        7e9 * 18 / 2**30, rel=0.01
    )


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("135M", 135_000_000),
        ("1.7B", 1_700_000_000),
        ("7b", 7_000_000_000),
        ("70B", 70_000_000_000),
        (" 134515008 ", 134_515_008),
        ("1,000", 1_000),
        (360, 360),
    ],
)
def test_parse_size(text_: str | int, expected: int) -> None:
    assert parse_size(text_) == expected


@pytest.mark.parametrize("bad", ["", "B", "seven", "-7B", "0", "7X", "nanB"])
def test_parse_size_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="parameter count"):
        parse_size(bad)


def test_plan_input_accepts_size_strings_and_refuses_bad_ones() -> None:
    assert PlanInput(rows=1, params="1.7B").params == 1_700_000_000
    with pytest.raises(ValidationError):
        PlanInput(rows=1, params="lots")
    with pytest.raises(ValidationError):
        PlanInput(rows=-1, params=1)


def test_render_shows_every_method_and_the_recommendation() -> None:
    p = plan(
        rows=5_000,
        params=134_515_008,
        model_name="SmolLM2-135M",
        hidden_size=576,
        layers=30,
        gpus=0,
    )
    out = render(p)
    for method in METHODS:
        assert f" {method} " in out
    assert "Recommended: lora" in out
    assert "* lora" in out
    assert "SmolLM2-135M" in out and "CPU only" in out
    assert all(r.text in out for r in p.reasons)
    assert all(s in out for s in p.sources)
