"""Build a tiny, randomly initialised model in the Instructor format, offline.

Same layout as hkunlp/instructor-*: a T5 encoder, mean Pooling, a Dense projection without bias,
and Normalize, saved with the sentence-transformers files (legacy pooling keys, as the hub repos
have them). The tokenizer is a small T5-like Unigram trained on local text.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from serving.knowledge.demo import demo_documents

D_MODEL = 64
OUT_DIM = 32


def _corpus() -> list[str]:
    lines: list[str] = []
    for path in demo_documents():
        if path.suffix in (".md", ".html", ".json"):
            lines.extend(
                line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            )
    lines += [
        "Represent the document for retrieval:",
        "Represent the question for retrieving supporting documents:",
    ] * 20
    return lines


def build_tiny_instructor(target: Path, seed: int = 0) -> Path:
    """Write the model directory to `target` and return it."""
    torch.manual_seed(seed)
    target.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(r"\s+", " "), normalizers.Strip()]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=600, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(target)

    config = T5Config(
        vocab_size=tok.get_vocab_size(),
        d_model=D_MODEL,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
    )
    T5EncoderModel(config).save_pretrained(target)

    (target / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense",
                },
                {
                    "idx": 3,
                    "name": "3",
                    "path": "3_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 512, "do_lower_case": False})
    )
    pooling = target / "1_Pooling"
    pooling.mkdir(exist_ok=True)
    (pooling / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": D_MODEL,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    dense = target / "2_Dense"
    dense.mkdir(exist_ok=True)
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": D_MODEL,
                "out_features": OUT_DIM,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    save_file(
        {"linear.weight": torch.randn(OUT_DIM, D_MODEL) / D_MODEL**0.5},
        str(dense / "model.safetensors"),
    )
    (target / "3_Normalize").mkdir(exist_ok=True)
    return target
