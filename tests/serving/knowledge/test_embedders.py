"""Embedders: the offline MiniLM default, and Instructor-format models reproducing INSTRUCTOR's
pooling (instruction tokens excluded from the mean), checked against an independent computation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoTokenizer, T5EncoderModel

from serving.knowledge.embedders import (
    INSTRUCTOR_DOCUMENT_INSTRUCTION,
    INSTRUCTOR_QUERY_INSTRUCTION,
    MINILM_MODEL_ID,
    EmbedderError,
    EmbedderSpec,
    InstructorEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
)
from tests.serving.knowledge.tiny_instructor import build_tiny_instructor

pytestmark = pytest.mark.slow

TEXTS = [
    "Hold the hub button for 10 seconds to reset it.",
    "  The lamp flickers on a dimmer.  ",
    (
        "Scenes are stored on the Perch hub, so they keep working when the internet is down and "
        "your phone is off; schedules follow the hub's time zone."
    ),
    "Glow",
]


def instructor_reference(
    model_dir: Path, instruction: str, texts: list[str], *, mask_instruction: bool = True
) -> np.ndarray:
    """INSTRUCTOR's computation, re-implemented with plain transformers: tokenize instruction +
    stripped text, run the T5 encoder, zero the instruction tokens (count of the instruction
    tokenized alone, minus its EOS) in the mask, mean-pool, apply Dense, L2-normalise."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = T5EncoderModel.from_pretrained(str(model_dir)).eval()
    dense = load_file(str(model_dir / "2_Dense" / "model.safetensors"))["linear.weight"]
    instruction_tokens = len(tokenizer(instruction)["input_ids"]) - 1
    batch = tokenizer([instruction + t.strip() for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].clone()
    if mask_instruction:
        mask[:, :instruction_tokens] = 0
    pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    return F.normalize(pooled @ dense.T, dim=-1).numpy()


@pytest.fixture(scope="module")
def tiny_instructor(tiny_instructor_dir: Path) -> InstructorEmbedder:
    embedder = load_embedder(f"instructor:{tiny_instructor_dir}")
    assert isinstance(embedder, InstructorEmbedder)
    return embedder


def test_instructor_documents_match_instructor_pooling(
    tiny_instructor: InstructorEmbedder, tiny_instructor_dir: Path
) -> None:
    instruction = "Represent the Kestrel support document for retrieval: "
    ours = np.asarray(tiny_instructor.embed_documents(TEXTS, instruction))
    reference = instructor_reference(tiny_instructor_dir, instruction, TEXTS)
    assert ours.shape == (4, 32)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # The check has teeth: pooling over the instruction tokens gives clearly different vectors.
    with_prompt = instructor_reference(
        tiny_instructor_dir, instruction, TEXTS, mask_instruction=False
    )
    assert np.abs(ours - with_prompt).max() > 1e-2


def test_instructor_query_side_uses_the_query_instruction(
    tiny_instructor: InstructorEmbedder, tiny_instructor_dir: Path
) -> None:
    question = "How do I reset the hub?"
    ours = np.asarray(tiny_instructor.embed_query(question))
    reference = instructor_reference(tiny_instructor_dir, INSTRUCTOR_QUERY_INSTRUCTION, [question])[
        0
    ]
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    as_document = np.asarray(tiny_instructor.embed_documents([question])[0])
    np.testing.assert_allclose(
        as_document,
        instructor_reference(tiny_instructor_dir, INSTRUCTOR_DOCUMENT_INSTRUCTION, [question])[0],
        atol=1e-5,
    )
    assert np.abs(ours - as_document).max() > 1e-3


def test_instructor_model_id_is_stable_and_tracks_the_weights(
    tiny_instructor: InstructorEmbedder, tiny_instructor_dir: Path, tmp_path: Path
) -> None:
    again = load_embedder(EmbedderSpec("instructor", str(tiny_instructor_dir)))
    assert again.model_id == tiny_instructor.model_id
    assert tiny_instructor.model_id.startswith("tiny-instructor@")
    other = build_tiny_instructor(tmp_path / "tiny-instructor", seed=1)
    assert load_embedder(f"instructor:{other}").model_id != tiny_instructor.model_id
    copy = shutil.copytree(tiny_instructor_dir, tmp_path / "moved" / "tiny-instructor")
    assert load_embedder(f"instructor:{copy}").model_id == tiny_instructor.model_id


def test_missing_hub_model_fails_clearly_offline() -> None:
    with pytest.raises(EmbedderError, match="hkunlp/instructor-large"):
        load_embedder("instructor:hkunlp/instructor-large")


def test_directory_without_sentence_transformers_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbedderError, match="modules.json"):
        load_embedder(f"instructor:{tmp_path}")


def test_minilm_is_the_offline_default(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.model_id == MINILM_MODEL_ID
    assert minilm.dimension == 384
    cat, feline, revenue = np.asarray(
        minilm.embed_documents(
            [
                "The cat sits on the mat.",
                "A feline is resting on a rug.",
                "Quarterly revenue grew by 12 percent.",
            ]
        )
    )
    assert np.linalg.norm(cat) == pytest.approx(1.0, abs=1e-5)
    assert cat @ feline == pytest.approx(0.5735, abs=1e-3)
    assert cat @ feline > cat @ revenue + 0.4


def test_minilm_ignores_instructions_and_batches_consistently(
    minilm: SentenceTransformerEmbedder,
) -> None:
    query = minilm.embed_query("How do I reset the hub?")
    with_instruction = minilm.embed_query("How do I reset the hub?", "Represent the question: ")
    batched = minilm.embed_documents(["How do I reset the hub?", *TEXTS])[0]
    np.testing.assert_allclose(query, with_instruction, atol=1e-6)
    np.testing.assert_allclose(query, batched, atol=1e-5)
    assert minilm.embed_documents([]) == []
    assert minilm.count_tokens("reset the hub") == 3 and minilm.max_input_tokens == 256


@pytest.mark.parametrize(
    ("text", "kind", "model"),
    [
        ("default", "sentence-transformers", None),
        ("minilm", "sentence-transformers", None),
        ("instructor:hkunlp/instructor-xl", "instructor", "hkunlp/instructor-xl"),
        ("hkunlp/instructor-base", "instructor", "hkunlp/instructor-base"),
        ("st:/models/e5", "sentence-transformers", "/models/e5"),
        (
            "sentence-transformers/all-mpnet-base-v2",
            "sentence-transformers",
            "sentence-transformers/all-mpnet-base-v2",
        ),
    ],
)
def test_embedder_spec_strings(text: str, kind: str, model: str | None) -> None:
    spec = EmbedderSpec.parse(text)
    assert (spec.kind, spec.model) == (kind, model)
