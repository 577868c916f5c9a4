"""Train an adapter (LoRA, QLoRA) or a full fine-tune from training rows.

A plain torch loop over packed sequences (see `training.examples`): AdamW, linear warmup and decay,
gradient accumulation and checkpointing, progress reports (step, loss, tokens/s, ETA), cooperative
cancellation, and a resumable checkpoint every `checkpoint_every` steps. A plain loop rather than a
`Trainer` subclass because packing with restarting positions, the assistant-only labels and the
QLoRA workaround below all need control of the batch and the model that the Trainer hides.

QLoRA loads the base in 4-bit NF4 through bitsandbytes, on a CUDA GPU or on the CPU (bitsandbytes
0.50 has CPU kernels). On CPUs with AVX512-BF16, one inference pass through a `Linear4bit` repacks
its weights into an inference-only layout that has no autograd: training after it gets silently
wrong gradients. Every `Linear4bit` is therefore kept on the trainable layout
(`support_avx512bf16_for_cpu = False`); tests compare QLoRA gradients with a reference so that this
class of bug cannot pass unseen. A method the machine cannot run fails with the reason
(`TrainingUnavailable`), never with a silent fallback to another method.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.examples import IGNORE, collate, encode_row, micro_batches, pack
from training.rows import Row

CHECKPOINT = "checkpoint"


class TrainingUnavailable(RuntimeError):
    """This machine cannot run the asked method (e.g. no bitsandbytes kernels for 4-bit)."""


class Cancelled(Exception):
    """The caller asked the run to stop; the last checkpoint is kept for a resume."""


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    tokens: int
    tokens_per_s: float
    eta_s: float | None


@dataclass
class TrainResult:
    output_dir: Path
    method: str
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    final_loss: float
    losses: list[float] = field(default_factory=list)
    trainable_params: int = 0
    peak_rss_mib: float = 0.0
    artifact_bytes: int = 0
    resumed_from: int = 0
    rows: int = 0
    sequences: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


def load_tokenizer(base_model: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _dtype(name: str) -> Any:
    import torch

    return torch.bfloat16 if name == "bfloat16" else torch.float32


def keep_trainable_layout(model: Any) -> int:
    """Keep every 4-bit layer on bitsandbytes' trainable layout (see the module docstring)."""
    import bitsandbytes as bnb

    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


@contextlib.contextmanager
def _peft_on_transformers_5() -> Iterator[None]:
    """peft still calls transformers' checkpointing methods by their old names, which warn."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning
        )
        yield


def enable_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (non-reentrant: works with frozen inputs)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def load_model(base_model: str | Path, config: TrainConfig, *, gpu: int = 0) -> Any:
    """The base model ready to train with `config.method` (adapters attached for LoRA / QLoRA),
    on CUDA device `gpu` when there is one (each data-parallel process has its own)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = _dtype(config.compute_dtype)
    model: Any
    if config.method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise TrainingUnavailable(f"QLoRA needs bitsandbytes: {exc}") from exc
        quantization = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=config.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
        device: Any = {"": gpu} if torch.cuda.is_available() else "cpu"
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(base_model), quantization_config=quantization, device_map=device, dtype=dtype
            )
        except (RuntimeError, ValueError, ImportError) as exc:
            raise TrainingUnavailable(f"cannot load the base model in 4-bit here: {exc}") from exc
        if keep_trainable_layout(model) == 0:
            raise TrainingUnavailable("the model loaded without 4-bit layers: not a QLoRA model")
        from peft import prepare_model_for_kbit_training

        # peft would enable checkpointing under transformers' deprecated name: done here instead.
        with _peft_on_transformers_5():
            model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
                model, use_gradient_checkpointing=False
            )
        if config.gradient_checkpointing:
            enable_checkpointing(model)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype)
        if torch.cuda.is_available():
            model = model.to(f"cuda:{gpu}")
        if config.gradient_checkpointing:
            enable_checkpointing(model)
    model.config.use_cache = False
    if config.method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
    )
    with _peft_on_transformers_5():
        return get_peft_model(model, lora)


def load_trained(base_model: str | Path, adapter_dir: Path, *, dtype: str = "float32") -> Any:
    """The base model with a trained adapter applied (for evaluation and serving)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=_dtype(dtype))
    with _peft_on_transformers_5():
        return PeftModel.from_pretrained(base, str(adapter_dir))


def assistant_loss(model: Any, inputs: dict[str, Any]) -> Any:
    """Mean cross-entropy over the tokens that carry labels. Logits are computed only at the
    positions that predict one: the vocabulary projection is the largest matmul of a small model,
    and most tokens of a support row (system prompt, question, context) carry no loss."""
    import torch

    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    out = model(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        logits_to_keep=keep,
        use_cache=False,
    )
    return torch.nn.functional.cross_entropy(out.logits.float(), targets[targets != IGNORE])


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trainable_state(model: Any, config: TrainConfig) -> dict[str, Any]:
    if config.method == "full":
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def _restore_state(model: Any, config: TrainConfig, state: dict[str, Any]) -> None:
    if config.method == "full":
        model.load_state_dict(state)
        return
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)


def train(
    rows: Sequence[Row],
    base_model: str | Path,
    output_dir: Path,
    config: TrainConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train on `rows` and write the adapter (or the full model) to `output_dir`.

    A checkpoint in `output_dir/checkpoint` from an interrupted run of the same rows and config is
    resumed. `should_stop` is asked between steps: when it says yes, a checkpoint is written and
    `Cancelled` raised."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    if not rows:
        raise ValueError("no rows to train on")
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    parallel = _data_parallel()
    rank, world = (parallel.process_index, parallel.num_processes) if parallel else (0, 1)
    main = rank == 0
    torch.manual_seed(config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(base_model)
    examples = [encode_row(tokenizer, row, config.max_length) for row in rows]
    sequences = pack(examples, config.max_length, packing=config.packing)
    if not sequences:
        raise ValueError("no row has an answer to learn from")
    per_batch = max(1, config.batch_tokens // config.max_length)
    batches_per_epoch = math.ceil(len(sequences) / per_batch)
    # One optimizer step takes `gradient_accumulation` micro-batches from every process.
    per_step = config.gradient_accumulation * world
    steps_per_epoch = max(1, batches_per_epoch // per_step)
    total_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))

    model = load_model(base_model, config, gpu=parallel.local_process_index if parallel else 0)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(total_steps * config.warmup_ratio), total_steps
    )
    device = next(p.device for p in model.parameters())
    trained = model  # the model itself; `model` may become its data-parallel wrapper
    if parallel is not None:
        # DDP (or DeepSpeed, by the accelerate config) over the model and optimizer; the
        # scheduler is stepped here, once per optimizer step, as in a single process.
        model, optimizer = parallel.prepare(model, optimizer)

    signature = {
        "config": config.model_dump(mode="json"),
        "rows": len(rows),
        "sequences": len(sequences),
    }
    checkpoint = output_dir / CHECKPOINT
    step = 0
    losses: list[float] = []
    tokens = 0
    if (checkpoint / "state.pt").exists():
        saved = torch.load(checkpoint / "state.pt", weights_only=False)
        if saved["signature"] == signature:
            _restore_state(trained, config, saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            step, losses, tokens = saved["step"], saved["losses"], saved["tokens"]
    resumed_from = step

    def save_checkpoint() -> None:
        if not main:  # every process holds the same weights: the first one writes them
            return
        checkpoint.mkdir(exist_ok=True)
        tmp = checkpoint / "state.pt.tmp"
        torch.save(
            {
                "signature": signature,
                "model": _trainable_state(trained, config),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "losses": losses,
                "tokens": tokens,
            },
            tmp,
        )
        os.replace(tmp, checkpoint / "state.pt")

    started = time.monotonic()
    run_tokens = 0
    pad_id = tokenizer.pad_token_id
    epoch = 0
    consumed = step * per_step  # micro-batches already done (for a resume)
    while step < total_steps:
        batches = micro_batches(sequences, per_batch, seed=config.seed, epoch=epoch)
        skip = min(consumed, len(batches))
        consumed -= skip
        pending = batches[skip:]
        for start in range(0, len(pending), per_step):
            if step >= total_steps:
                break
            shared = pending[start : start + per_step]
            if len(shared) < world:  # a tail too short to give every process a micro-batch
                break
            group = shared[rank::world]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            step_tokens = 0
            for batch in group:
                inputs = {k: v.to(device) for k, v in collate(batch, pad_id).items()}
                loss = assistant_loss(model, inputs)
                scaled = loss / len(group)
                if parallel is not None:
                    parallel.backward(scaled)  # gradients are averaged across processes
                else:
                    scaled.backward()
                step_loss += float(loss.detach()) / len(group)
                step_tokens += sum(len(p.input_ids) for p in batch)
            if parallel is not None:
                # (reduce works in place: one tensor per reduction)
                loss_sum = torch.tensor([step_loss], device=device)
                token_sum = torch.tensor([float(step_tokens)], device=device)
                step_loss = float(parallel.reduce(loss_sum, "mean")[0])
                step_tokens = int(parallel.reduce(token_sum, "sum")[0])
                parallel.clip_grad_norm_(params, 1.0)
            else:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            tokens += step_tokens
            run_tokens += step_tokens
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(round(step_loss, 5))
            elapsed = time.monotonic() - started
            rate = run_tokens / elapsed if elapsed > 0 else 0.0
            done_steps = step - resumed_from
            eta = (total_steps - step) * elapsed / done_steps if done_steps else None
            if on_progress is not None and main:
                on_progress(
                    Progress(
                        step=step,
                        total_steps=total_steps,
                        epoch=round(step / steps_per_epoch, 3),
                        loss=step_loss,
                        tokens=tokens,
                        tokens_per_s=round(rate, 1),
                        eta_s=round(eta, 1) if eta is not None else None,
                    )
                )
            if step % config.checkpoint_every == 0 and step < total_steps:
                save_checkpoint()
            if should_stop is not None and should_stop() and step < total_steps:
                save_checkpoint()
                raise Cancelled(f"stopped at step {step} of {total_steps}")
        epoch += 1
    seconds = time.monotonic() - started
    artifact = output_dir / ("model" if config.method == "full" else "adapter")
    if parallel is not None:
        parallel.wait_for_everyone()
    if main:
        trained.save_pretrained(str(artifact))
        if config.method == "full":
            tokenizer.save_pretrained(str(artifact))
        shutil.rmtree(checkpoint, ignore_errors=True)
    if parallel is not None:
        parallel.wait_for_everyone()
    size = sum(f.stat().st_size for f in artifact.rglob("*") if f.is_file())
    result = TrainResult(
        output_dir=artifact,
        method=config.method,
        steps=step,
        tokens=tokens,
        seconds=round(seconds, 2),
        tokens_per_s=round(run_tokens / seconds, 1) if seconds > 0 else 0.0,
        final_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        trainable_params=trainable_parameters(trained),
        peak_rss_mib=round(_peak_rss_mib(), 1),
        artifact_bytes=size,
        resumed_from=resumed_from,
        rows=len(rows),
        sequences=len(sequences),
    )
    if main:
        (output_dir / "train_result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _data_parallel() -> Any:
    """An accelerate `Accelerator` when this process is one of several (`accelerate launch`,
    `torchrun`): each process then trains on its share of the micro-batches, gradients are
    averaged, and the first process writes checkpoints and the adapter. None for one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    # Without a GPU, accelerate only forms a (gloo) process group when told it runs on the CPU.
    return Accelerator(cpu=not torch.cuda.is_available())
