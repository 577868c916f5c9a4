"""The training planner: which method (`qlora`, `lora`, `full`) to use for a dataset and a base model,
and how much GPU memory each would need, with the reasoning a user reads.

Rules (each reason in a `Plan` names its rule; `RULE_SOURCES` links each rule to its sources):

- ``data-size``: below ~50,000 rows a full fine-tune is rarely worth it: LoRA and QLoRA match it on
  instruction datasets of that size and forget less of what the base model knew. Full fine-tuning
  learns more than LoRA on large data (very large instruction sets, continued pretraining), so from
  50,000 rows it is recommended when it is known to fit. [Biderman et al. 2024; Dettmers et al. 2023]
- ``dataset``: ~1,000 curated examples suffice to teach style and format; under ~200 rows an adapter
  may learn little, and more reviewed rows are the fix; far more rows than that is fine. [Zhou 2023]
- ``adapter``: LoRA trains ``2 · rank · hidden · matrices · layers`` parameters (each adapted
  ``d × d`` matrix gets ``A: d × r`` and ``B: r × d``; wider MLP matrices make this an underestimate,
  grouped-query k/v an overestimate — adapters are small beside the base weights either way), and
  only those carry gradients and optimizer state. [Hu et al. 2021]
- ``memory`` (bytes per parameter): QLoRA's frozen base is 4-bit NF4 with double-quantised constants
  (0.5 + 0.127/8 bytes), plus layers kept in 16 bit (embeddings, norms, head): ~0.55 bytes. LoRA's
  frozen base is 2 bytes (bf16), 4 on CPU (fp32). Each trainable adapter parameter costs ~16 bytes
  (the weight and its gradient, two fp32 AdamW moments, a master copy; peft keeps adapters in fp32,
  which comes to the same). A full fine-tune in mixed precision with AdamW costs 18 bytes per
  parameter: 6 for weights (fp32 master + 16-bit copy), 4 for fp32 gradients, 8 for AdamW (16 in fp32
  on CPU). With a budget given, the first method that fits in the data rule's order is recommended:
  full (≥ 50k rows), then 16-bit LoRA (faster, same quality), then QLoRA. [HF "Model training
  anatomy"; Dettmers et al. 2023]
- ``bigger-base``: at equal memory a larger 4-bit base model beats a smaller 16-bit one; QLoRA of a
  ~30B model needs no more memory than 16-bit LoRA of a ~13B one (33B fits a 24 GB GPU, 65B a 48 GB
  one). The planner names the largest base a budget allows under QLoRA. [Dettmers et al. 2023;
  Dettmers & Zettlemoyer 2023]
- ``nothing-fits``: when nothing fits, the smallest option (QLoRA) is recommended, with what would
  make it fit: a shorter sequence, micro-batch 1, more GPUs, a smaller base.
- ``multi-gpu``: with several GPUs, weights, gradients and optimizer state are taken as sharded
  (FSDP / DeepSpeed ZeRO-3, QLoRA included via bitsandbytes' quant storage), i.e. divided by the GPU
  count; activations and overhead stay per GPU. Plain data parallelism keeps a full copy per GPU.
  [Rajbhandari et al. 2019; PEFT and bitsandbytes FSDP guides]
- ``cpu``: without a GPU training runs, slowly; LoRA in fp32 is what works there (bitsandbytes'
  4-bit kernels are built for CUDA GPUs) and a full fine-tune is impractical beyond small models.
- ``estimates``: activations assume gradient checkpointing and fused attention (FlashAttention /
  SDPA): a 16-bit checkpoint of each layer's input (``2·s·b·h`` bytes per layer) plus one layer being
  recomputed (``34·s·b·h`` bytes, Korthikanti et al. 2022 without the attention-score term), plus
  fp32 logits and their gradient (``8·s·b·vocab``); doubled in fp32 on CPU. Overhead is a fixed
  ~1 GiB (CUDA context, allocator, framework). Without a hidden size and layer count they are
  estimated from ``N ≈ 12 · layers · hidden²`` (Kaplan et al. 2020) with the Llama-family shape
  ``hidden ≈ 128 · layers``. These are estimates to plan with, not guarantees.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Method = Literal["qlora", "lora", "full"]
Rule = Literal[
    "data-size",
    "dataset",
    "adapter",
    "memory",
    "bigger-base",
    "nothing-fits",
    "multi-gpu",
    "cpu",
    "estimates",
]
METHODS: tuple[Method, ...] = ("qlora", "lora", "full")

FULL_MIN_ROWS = 50_000
TINY_ROWS = 200
STYLE_ROWS = 1_000  # LIMA's curated set
DEFAULT_TOKENS_PER_ROW = 350  # a support question, a few passages' worth of context, an answer
DEFAULT_SEQ_LEN = 2048
DEFAULT_VOCAB = 32_000  # Llama 2 / Mistral; Llama 3 and Qwen use 128k-152k
GIB = 2**30
OVERHEAD_GIB = 1.0

QLORA_WEIGHT_BYTES = 0.55
ADAPTER_STATE_BYTES = 16.0
FULL_WEIGHT_BYTES = 6.0
FULL_STATE_BYTES = 12.0  # fp32 gradients (4) + AdamW moments (8); fp32 on CPU keeps the same 12
# Activation bytes per token per unit of hidden size, with 16-bit values (fp32 on CPU doubles it).
_CHECKPOINT_BYTES = 2  # per layer
_RECOMPUTE_BYTES = 34  # one layer at a time
_LOGIT_BYTES = 8


def _source(title: str, url: str) -> str:
    return f"{title} — {url}"


_QLORA = _source(
    "QLoRA: Efficient Finetuning of Quantized LLMs (Dettmers et al. 2023)",
    "https://arxiv.org/abs/2305.14314",
)
_LORA = _source(
    "LoRA: Low-Rank Adaptation of Large Language Models (Hu et al. 2021)",
    "https://arxiv.org/abs/2106.09685",
)
_LIMA = _source(
    "LIMA: Less Is More for Alignment (Zhou et al. 2023)",
    "https://arxiv.org/abs/2305.11206",
)
_LEARNS_LESS = _source(
    "LoRA Learns Less and Forgets Less (Biderman et al. 2024)",
    "https://arxiv.org/abs/2405.09673",
)
_ANATOMY = _source(
    "Model training anatomy (Hugging Face Transformers docs)",
    "https://huggingface.co/docs/transformers/model_memory_anatomy",
)
_KBIT = _source(
    "The case for 4-bit precision: k-bit Inference Scaling Laws (Dettmers & Zettlemoyer 2023)",
    "https://arxiv.org/abs/2212.09720",
)
_ZERO = _source(
    "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models (Rajbhandari et al. 2019)",
    "https://arxiv.org/abs/1910.02054",
)
_PEFT_FSDP = _source(
    "Fully Sharded Data Parallel (Hugging Face PEFT docs)",
    "https://huggingface.co/docs/peft/accelerate/fsdp",
)
_BNB_FSDP = _source(
    "FSDP-QLoRA (bitsandbytes docs)",
    "https://huggingface.co/docs/bitsandbytes/main/fsdp_qlora",
)
_BNB_INSTALL = _source(
    "bitsandbytes installation guide",
    "https://huggingface.co/docs/bitsandbytes/main/installation",
)
_RECOMPUTE = _source(
    "Reducing Activation Recomputation in Large Transformer Models (Korthikanti et al. 2022)",
    "https://arxiv.org/abs/2205.05198",
)
_KAPLAN = _source(
    "Scaling Laws for Neural Language Models (Kaplan et al. 2020)",
    "https://arxiv.org/abs/2001.08361",
)

RULE_SOURCES: dict[Rule, tuple[str, ...]] = {
    "data-size": (_LEARNS_LESS, _QLORA),
    "dataset": (_LIMA,),
    "adapter": (_LORA,),
    "memory": (_ANATOMY, _QLORA),
    "bigger-base": (_QLORA, _KBIT),
    "nothing-fits": (_QLORA, _ZERO),
    "multi-gpu": (_ZERO, _PEFT_FSDP, _BNB_FSDP),
    "cpu": (_BNB_INSTALL, _LORA),
    "estimates": (_ANATOMY, _RECOMPUTE, _KAPLAN),
}

_SIZE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_size(text: str | int) -> int:
    """A parameter count from "135M", "1.7B", "7b", "70B" or a plain integer ("134515008")."""
    if isinstance(text, int):
        value, unit = Decimal(text), ""
    else:
        cleaned = text.strip().replace(",", "").replace("_", "").upper()
        unit = cleaned[-1:] if cleaned[-1:] in _SIZE else ""
        try:
            value = Decimal(cleaned[: len(cleaned) - len(unit)])
        except InvalidOperation:
            value = Decimal(0)
    count = int(value * _SIZE[unit]) if value.is_finite() else 0
    if count <= 0:
        raise ValueError(
            f"expected a parameter count such as 135M, 1.7B, 7B or 134515008, got {text!r}"
        )
    return count


class PlanInput(BaseModel):
    """What the planner needs; the fields' descriptions are the CLI's help text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0, description="Training rows in the dataset snapshot.")
    params: int = Field(
        gt=0, description="Base model parameter count (135M, 1.7B, 7B, or an integer)."
    )
    model_name: str = Field("", description="Base model name, for display.")
    tokens_per_row: int | None = Field(
        None, gt=0, description=f"Mean tokens per row (default ~{DEFAULT_TOKENS_PER_ROW})."
    )
    hidden_size: int | None = Field(None, gt=0, description="Model hidden size, if known.")
    layers: int | None = Field(None, gt=0, description="Number of transformer layers, if known.")
    vocab_size: int | None = Field(
        None, gt=0, description=f"Vocabulary size, if known (default {DEFAULT_VOCAB:,})."
    )
    gpu_memory_gib: float | None = Field(
        None, ge=0, description="Memory per GPU in GiB; unknown if unset, 0 for CPU only."
    )
    gpus: int = Field(1, ge=0, description="Number of GPUs (0 for CPU only).")
    seq_len: int | None = Field(
        None,
        gt=0,
        description=f"Training sequence length (default: from tokens per row, else {DEFAULT_SEQ_LEN}).",
    )
    micro_batch: int = Field(1, ge=1, description="Rows per GPU per step.")
    lora_rank: int = Field(16, ge=1, description="LoRA rank r.")
    lora_matrices: int = Field(
        7,
        ge=1,
        description="Adapted matrices per layer (7: all linear layers, as QLoRA does).",
    )

    @field_validator("params", mode="before")
    @classmethod
    def _parse_params(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @property
    def cpu_only(self) -> bool:
        return self.gpus == 0 or self.gpu_memory_gib == 0

    @property
    def effective_seq_len(self) -> int:
        """Explicit, else room for rows about twice the mean length (power of two, 256–8192)."""
        if self.seq_len is not None:
            return self.seq_len
        if self.tokens_per_row is None:
            return DEFAULT_SEQ_LEN
        return min(8192, max(256, 1 << math.ceil(math.log2(2 * self.tokens_per_row))))

    @property
    def shape_estimated(self) -> bool:
        return self.hidden_size is None or self.layers is None

    @property
    def shape(self) -> tuple[int, int]:
        """(hidden size, layers): as given, or from N ≈ 12·L·h² with h ≈ 128·L."""
        n, hidden, layers = self.params, self.hidden_size, self.layers
        if hidden is not None and layers is not None:
            return hidden, layers
        if hidden is not None:
            return hidden, max(1, round(n / (12 * hidden**2)))
        if layers is not None:
            return max(64, round(math.sqrt(n / (12 * layers)))), layers
        layers = max(1, round((n / (12 * 128**2)) ** (1 / 3)))
        return 128 * layers, layers


class MethodEstimate(BaseModel):
    """Memory for one method, per GPU (or RAM on CPU), in GiB."""

    method: Method
    weights_gib: float = Field(description="Model weights (frozen base, or all weights for full).")
    trainable_params: int
    gradients_optimizer_gib: float = Field(
        description="What the trainable parameters carry: gradients, AdamW state, adapter weights."
    )
    activations_gib: float
    overhead_gib: float
    total_gib: float
    fits: bool | None = Field(description="Fits the GPU memory; None when that is unknown.")
    note: str


class Reason(BaseModel):
    """One sentence for the user, tied to the rule (see `RULE_SOURCES`) it comes from."""

    rule: Rule
    text: str


class Plan(BaseModel):
    """The recommendation, every method's estimate, and the reasons with their sources."""

    inputs: PlanInput
    seq_len: int
    hidden_size: int
    layers: int
    recommended: Method
    estimates: dict[Method, MethodEstimate]
    reasons: list[Reason]
    sources: list[str] = Field(description="Title and URL of each source the reasons rest on.")


def lora_params(rank: int, hidden: int, matrices: int, layers: int) -> int:
    """Trainable adapter parameters: A (d × r) and B (r × d) per adapted d × d matrix."""
    return 2 * rank * hidden * matrices * layers


def estimate(inputs: PlanInput, method: Method) -> MethodEstimate:
    """Memory `method` needs for `inputs`, per GPU when there are several (sharded states)."""
    hidden, layers = inputs.shape
    cpu, n = inputs.cpu_only, inputs.params
    shards = max(inputs.gpus, 1)
    value_bytes = 4 if cpu else 2
    if method == "full":
        trainable = n
        weights = n * (4 if cpu else FULL_WEIGHT_BYTES)
        states = n * FULL_STATE_BYTES
        note = (
            "all weights train: fp32 AdamW" if cpu else "all weights train: mixed-precision AdamW"
        )
    else:
        trainable = lora_params(inputs.lora_rank, hidden, inputs.lora_matrices, layers)
        weights = n * (QLORA_WEIGHT_BYTES if method == "qlora" else value_bytes)
        states = trainable * ADAPTER_STATE_BYTES
        base = {"qlora": "4-bit NF4", "lora": "fp32" if cpu else "16-bit"}[method]
        note = f"{base} frozen base + LoRA r={inputs.lora_rank} ({trainable / n:.2%} of weights)"
    tokens = inputs.effective_seq_len * inputs.micro_batch
    vocab = inputs.vocab_size or DEFAULT_VOCAB
    activations = (
        tokens * hidden * (_CHECKPOINT_BYTES * layers + _RECOMPUTE_BYTES) * value_bytes / 2
    )
    activations += tokens * vocab * _LOGIT_BYTES
    parts = [weights / shards / GIB, states / shards / GIB, activations / GIB, OVERHEAD_GIB]
    total = sum(parts)
    fits: bool | None
    if cpu:
        fits = False if method == "qlora" else None
        note = "needs a CUDA GPU (bitsandbytes 4-bit)" if method == "qlora" else f"{note}; in RAM"
    else:
        fits = None if inputs.gpu_memory_gib is None else total <= inputs.gpu_memory_gib
        if shards > 1:
            note += f"; sharded over {shards} GPUs"
    return MethodEstimate(
        method=method,
        weights_gib=round(parts[0], 2),
        trainable_params=trainable,
        gradients_optimizer_gib=round(parts[1], 2),
        activations_gib=round(parts[2], 2),
        overhead_gib=OVERHEAD_GIB,
        total_gib=round(total, 2),
        fits=fits,
        note=note,
    )


def largest_model(inputs: PlanInput, method: Method, memory_gib: float) -> int:
    """Largest parameter count (Llama-family shape) whose `method` estimate fits `memory_gib`."""
    low, high = 10**7, 10**13
    for _ in range(60):
        mid = math.isqrt(low * high)
        trial = inputs.model_copy(update={"params": mid, "hidden_size": None, "layers": None})
        if estimate(trial, method).total_gib <= memory_gib:
            low = mid
        else:
            high = mid
    return low


def plan_training(inputs: PlanInput) -> Plan:
    """Recommend a method and estimate each method's memory, with the reasons."""
    estimates = {m: estimate(inputs, m) for m in METHODS}
    reasons = _data_reasons(inputs)
    if inputs.cpu_only:
        recommended: Method = "lora"
        reasons.append(_cpu_reason(inputs, estimates))
    elif inputs.gpu_memory_gib is None:
        recommended = "lora"
        reasons.append(_unknown_memory_reason(inputs, estimates))
    else:
        recommended = _fit_reasons(inputs, estimates, reasons)
    if recommended != "full":
        trainable = estimates[recommended].trainable_params
        reasons.append(
            Reason(
                rule="adapter",
                text=f"LoRA at rank {inputs.lora_rank} on {inputs.lora_matrices} matrices per "
                f"layer trains ~{_count(trainable)} parameters ({trainable / inputs.params:.2%} of "
                "the model); the frozen base needs no gradients or optimizer state.",
            )
        )
    if inputs.gpus > 1 and not inputs.cpu_only:
        reasons.append(
            Reason(
                rule="multi-gpu",
                text=f"With {inputs.gpus} GPUs the weights, gradients and optimizer state are "
                "assumed sharded (FSDP or DeepSpeed ZeRO-3), so they are divided by "
                f"{inputs.gpus}; plain data parallelism (DDP) would keep a full copy per GPU.",
            )
        )
    shape_note = (
        " Hidden size and layer count were estimated from the parameter count; give them for a "
        "better activation estimate."
        if inputs.shape_estimated
        else ""
    )
    reasons.append(
        Reason(
            rule="estimates",
            text="Memory figures are estimates to plan with, not guarantees: gradient "
            "checkpointing on, fused attention, AdamW, and ~1 GiB of CUDA/framework overhead."
            + shape_note,
        )
    )
    hidden, layers = inputs.shape
    sources = list(dict.fromkeys(s for r in reasons for s in RULE_SOURCES[r.rule]))
    return Plan(
        inputs=inputs,
        seq_len=inputs.effective_seq_len,
        hidden_size=hidden,
        layers=layers,
        recommended=recommended,
        estimates=estimates,
        reasons=reasons,
        sources=sources,
    )


def _order(inputs: PlanInput) -> tuple[Method, ...]:
    """Methods the data rule allows, best first: 16-bit LoRA before QLoRA (faster, same quality)."""
    return ("full", "lora", "qlora") if inputs.rows >= FULL_MIN_ROWS else ("lora", "qlora")


def _data_reasons(inputs: PlanInput) -> list[Reason]:
    rows = inputs.rows
    if rows < FULL_MIN_ROWS:
        size = Reason(
            rule="data-size",
            text=f"{rows:,} rows is below ~{FULL_MIN_ROWS:,}: a full fine-tune is rarely worth it "
            "here; LoRA and QLoRA match it on instruction datasets of this size and forget less "
            "of what the base model knew.",
        )
    else:
        size = Reason(
            rule="data-size",
            text=f"{rows:,} rows is at least ~{FULL_MIN_ROWS:,}: a full fine-tune can learn more "
            "than LoRA on data this large, so it is recommended when it fits in memory.",
        )
    if rows < TINY_ROWS:
        amount = (
            f"Only {rows:,} rows: an adapter may learn little from so few; more reviewed rows "
            f"help (LIMA taught style and format with ~{STYLE_ROWS:,} curated examples)."
        )
    elif rows < STYLE_ROWS:
        amount = (
            f"{rows:,} rows can shift style; ~{STYLE_ROWS:,} curated examples were enough for "
            "style and format in LIMA, so more reviewed rows will help."
        )
    else:
        amount = (
            f"{rows:,} rows is enough to teach style and format (LIMA used ~{STYLE_ROWS:,} "
            "curated examples); more than that is fine."
        )
    return [size, Reason(rule="dataset", text=amount)]


def _cpu_reason(inputs: PlanInput, estimates: dict[Method, MethodEstimate]) -> Reason:
    tokens = inputs.rows * (inputs.tokens_per_row or DEFAULT_TOKENS_PER_ROW)
    return Reason(
        rule="cpu",
        text="No GPU: training runs on the CPU, but slowly (this dataset is "
        f"~{_count(tokens)} tokens per epoch). LoRA in fp32 is what works there "
        f"(~{estimates['lora'].total_gib:.1f} GiB of RAM): QLoRA's 4-bit base needs bitsandbytes "
        "on a CUDA GPU, and a full fine-tune is impractically slow beyond small models.",
    )


def _unknown_memory_reason(inputs: PlanInput, estimates: dict[Method, MethodEstimate]) -> Reason:
    totals = ", ".join(f"{m} ~{estimates[m].total_gib:.1f} GiB" for m in METHODS)
    text = (
        f"GPU memory not given, so nothing is checked against it; per GPU: {totals}. "
        "16-bit LoRA is the default (faster than QLoRA, same quality); use QLoRA if it does not fit."
    )
    if inputs.rows >= FULL_MIN_ROWS:
        text += " With that much data a full fine-tune is worth it if the GPUs hold it."
    return Reason(rule="memory", text=text)


def _fit_reasons(
    inputs: PlanInput, estimates: dict[Method, MethodEstimate], reasons: list[Reason]
) -> Method:
    """Pick the first method in the data rule's order that fits; add why to `reasons`."""
    memory = inputs.gpu_memory_gib or 0.0
    order = _order(inputs)
    fitting = [m for m in order if estimates[m].fits]
    if not fitting:
        reasons.append(Reason(rule="nothing-fits", text=_nothing_fits(inputs, estimates)))
        return "qlora"
    chosen = fitting[0]
    missed = order[: order.index(chosen)]
    text = f"With {memory:g} GiB per GPU, {chosen} fits (~{estimates[chosen].total_gib:.1f} GiB)"
    if missed:
        text += "; " + ", ".join(f"{m} needs ~{estimates[m].total_gib:.1f} GiB" for m in missed)
    if "full" in missed and (needed := _gpus_needed(inputs, estimates["full"])) is not None:
        text += f" (full would fit on {needed} such GPUs with FSDP / ZeRO-3 sharding)"
    if chosen == "qlora":
        text += "; 4-bit QLoRA matched 16-bit LoRA quality in the QLoRA paper"
    reasons.append(Reason(rule="memory", text=text + "."))
    if chosen == "lora":
        largest = largest_model(inputs, "qlora", memory)
        if largest >= 2 * inputs.params:
            reasons.append(
                Reason(
                    rule="bigger-base",
                    text=f"This memory would also fit QLoRA of a base model up to "
                    f"~{_count(largest)} parameters: at equal memory a larger 4-bit base tends "
                    "to beat a smaller 16-bit one, so consider a bigger model of the same family.",
                )
            )
    elif chosen == "qlora" and not estimates["lora"].fits:
        largest = largest_model(inputs, "lora", memory)
        reasons.append(
            Reason(
                rule="bigger-base",
                text=f"16-bit LoRA in this memory would only fit a base up to ~{_count(largest)} "
                "parameters; QLoRA of this larger model tends to do better than that.",
            )
        )
    return chosen


def _nothing_fits(inputs: PlanInput, estimates: dict[Method, MethodEstimate]) -> str:
    memory = inputs.gpu_memory_gib or 0.0
    smallest = estimates["qlora"]
    advice: list[str] = []
    short = inputs.model_copy(
        update={"seq_len": min(512, inputs.effective_seq_len), "micro_batch": 1}
    )
    short_total = estimate(short, "qlora").total_gib
    if (short.seq_len, 1) != (inputs.effective_seq_len, inputs.micro_batch):
        verdict = "fits" if short_total <= memory else "still too much"
        advice.append(
            f"sequence length {short.seq_len} and micro-batch 1 (~{short_total:.1f} GiB, {verdict})"
        )
    if (needed := _gpus_needed(inputs, smallest)) is not None:
        advice.append(f"{needed} GPUs of this size with FSDP / ZeRO-3 sharding")
    largest = largest_model(inputs, "qlora", memory)
    advice.append(f"a smaller base model (QLoRA fits up to ~{_count(largest)} parameters here)")
    return (
        f"Nothing fits in {memory:g} GiB per GPU: the smallest option, QLoRA, needs "
        f"~{smallest.total_gib:.1f} GiB. To make it fit, try " + "; or ".join(advice) + "."
    )


def _gpus_needed(inputs: PlanInput, e: MethodEstimate) -> int | None:
    """GPUs of the given size that would hold `e` sharded; None if activations alone overflow one."""
    room = (inputs.gpu_memory_gib or 0.0) - e.activations_gib - e.overhead_gib
    if room <= 0:
        return None
    sharded = (e.weights_gib + e.gradients_optimizer_gib) * max(inputs.gpus, 1)
    return max(2, math.ceil(sharded / room))


def _count(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def render(plan: Plan) -> str:
    """The plan as plain text for the CLI: header, a table of the three methods, reasons, sources."""
    given = plan.inputs
    shape = f"hidden {plan.hidden_size}, {plan.layers} layers" + (
        ", estimated" if given.shape_estimated else ""
    )
    name = given.model_name or "base model"
    if given.cpu_only:
        hardware = "CPU only (no GPU); figures are RAM"
    elif given.gpu_memory_gib is None:
        hardware = f"{given.gpus} GPU(s), memory not given"
    else:
        hardware = f"{given.gpus} × {given.gpu_memory_gib:g} GiB GPU"
    chosen = plan.estimates[plan.recommended]
    lines = [
        f"Model:    {name} ({_count(given.params)} params; {shape})",
        f"Data:     {given.rows:,} rows · seq {plan.seq_len} · micro-batch {given.micro_batch} · "
        f"LoRA r={given.lora_rank}",
        f"Hardware: {hardware}",
        "",
        f"Memory in GiB per {'process (RAM)' if given.cpu_only else 'GPU'}; * = recommended",
        f"  {'method':<7}{'weights':>9}{'trainable':>11}{'grad+opt':>10}{'activ.':>8}"
        f"{'overhead':>10}{'total':>9}  {'fits':<5} note",
    ]
    for method in METHODS:
        e = plan.estimates[method]
        fits = {True: "yes", False: "no", None: "?"}[e.fits]
        mark = "*" if method == plan.recommended else " "
        lines.append(
            f"{mark} {method:<7}{e.weights_gib:>9.1f}{_count(e.trainable_params):>11}"
            f"{e.gradients_optimizer_gib:>10.1f}{e.activations_gib:>8.1f}{e.overhead_gib:>10.1f}"
            f"{e.total_gib:>9.1f}  {fits:<5} {e.note}"
        )
    lines += ["", f"Recommended: {plan.recommended} (~{chosen.total_gib:.1f} GiB)", "", "Why:"]
    lines += [f"  - {r.text}" for r in plan.reasons]
    lines += ["", "Sources:"] + [f"  - {s}" for s in plan.sources]
    return "\n".join(lines)
