"""Incremental detokenisation and stop-string hold-back, with a byte-level fake tokenizer."""

from __future__ import annotations

from collections.abc import Sequence

from serving.decode_stream import IncrementalDecoder, StopMatcher


# A byte-level "tokenizer": token id i is the single byte i, like GPT-2's byte fallback.
def decode_bytes(ids: Sequence[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def push_all(text: str) -> tuple[list[str], IncrementalDecoder]:
    decoder = IncrementalDecoder(decode_bytes)
    return [decoder.push(b) for b in text.encode()], decoder


def test_multibyte_characters_are_never_split() -> None:
    text = "café 🙂 naïve — ok"
    deltas, decoder = push_all(text)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + decoder.flush() == text
    # The four bytes of the emoji produce one delta, on the last byte.
    emoji = text.encode().index("🙂".encode())
    assert deltas[emoji : emoji + 4] == ["", "", "", "🙂"]


def test_flush_returns_a_truncated_character_as_replacement() -> None:
    decoder = IncrementalDecoder(decode_bytes)
    pieces = [decoder.push(b) for b in "a🙂".encode()[:3]]
    assert pieces == ["a", "", ""]
    assert decoder.flush() == "\ufffd"
    assert decoder.flush() == ""


def test_window_keeps_leading_spaces_a_tokenizer_would_strip() -> None:
    # SentencePiece-style: a decode strips one leading space, so decoding each token alone would
    # lose the spaces between words.
    vocab = {1: " Hello", 2: " world", 3: "!"}

    def decode(ids: Sequence[int]) -> str:
        return "".join(vocab[i] for i in ids).removeprefix(" ")

    decoder = IncrementalDecoder(decode)
    deltas = [decoder.push(i) for i in (1, 2, 3)]
    assert "".join(deltas) == "Hello world!"
    assert deltas == ["Hello", " world", "!"]


def test_without_stops_text_passes_through() -> None:
    matcher = StopMatcher(())
    assert [matcher.feed(t) for t in ("a", "b")] == ["a", "b"]
    assert matcher.flush() == "" and not matcher.stopped


def test_possible_stop_prefix_is_held_back_then_released() -> None:
    matcher = StopMatcher(["</answer>"])
    assert matcher.feed("x </an") == "x "
    assert matcher.feed("d") == "</and"  # can no longer become "</answer>": released at once
    assert matcher.feed("z <") == "z "
    assert matcher.flush() == "<"
    assert not matcher.stopped


def test_stop_string_split_across_deltas_cuts_everything_after() -> None:
    matcher = StopMatcher(["STOP"])
    out = [matcher.feed(t) for t in ("Hello S", "T", "OP and more", "even more")]
    assert "".join(out) == "Hello "
    assert matcher.stopped
    assert matcher.flush() == ""


def test_earliest_of_several_stops_wins() -> None:
    matcher = StopMatcher(["world", "lo w", ""])
    assert matcher.feed("hello world") == "hel"
    assert matcher.stopped


def test_stop_inside_one_delta() -> None:
    matcher = StopMatcher(["\n\n"])
    assert matcher.feed("line one\n\nline two") == "line one"
    assert matcher.stopped
