"""Training-row import and export: every format round-trips in every file type, files in the
trainers' documented shapes import as the rows they mean, bad lines are reported by number and
reason while the rest imports, whole-file problems raise a readable `FormatError`, export refuses
what a format cannot carry, and a failed export leaves no partial file."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from training.formats import (
    FILE_TYPES,
    FORMATS,
    Format,
    FormatError,
    LineError,
    Refusal,
    detect_format,
    iter_rows,
    read_rows,
    record_of,
    row_of,
    write_rows,
)
from training.rows import Row, Turn

FULL = Row(
    system="You are Acme's support assistant.\nAnswer briefly, in the user's language.",
    history=(
        Turn(role="user", content='Mein Gerät "X-1" startet nicht, 2× probiert.'),
        Turn(role="assistant", content="Haben Sie es, bitte, neu gestartet?\r\nDanach: ok?"),
    ),
    instruction='Ja. Und jetzt? "Reset", dann?',
    input="Handbuch, S. 4:\n»Taste 5 s halten«, dann warten.",
    output='Halten Sie "Reset" 5 s gedrückt, dann warten; fertig. 🙂\n\n— Acme',
    category="closed_qa",
)
PLAIN = Row(instruction="Plain question, with a comma", output='An answer with "quotes", too')
INPUT_ONLY = Row(instruction="Summarise", input="a, b\nc; \"d\"\n\n'e'", output="")
SYSTEM_ONLY = Row(system="Be terse.", instruction="Opening hours?", output="9–17 h, Mon–Fri.")
CATEGORY_ONLY = Row(instruction="Is it waterproof?", output="IP67: yes.", category="open_qa")
ROWS = [FULL, PLAIN, INPUT_ONLY, SYSTEM_ONLY, CATEGORY_ONLY]

# Which of ROWS each format can carry (the others are refused on export).
CARRIED = {
    Format.ALPACA: ROWS,
    Format.DOLLY: [PLAIN, INPUT_ONLY, CATEGORY_ONLY],
    Format.ORCA: [PLAIN, INPUT_ONLY, SYSTEM_ONLY, CATEGORY_ONLY],
    Format.SHAREGPT: ROWS,
    Format.OPENAI: ROWS,
    Format.PROMPT_COMPLETION: [PLAIN, INPUT_ONLY, CATEGORY_ONLY],
}
# Formats whose records hold every field: import gives back equal rows.
LOSSLESS = {Format.ALPACA, Format.DOLLY}


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("file_type", FILE_TYPES)
@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_round_trips_in_every_file_type(
    tmp_path: Path, fmt: Format, file_type: str
) -> None:
    path = tmp_path / f"rows.{file_type}"
    written = write_rows(ROWS, path, format=fmt)
    assert written.written == len(CARRIED[fmt])
    assert [r.index for r in written.refused] == [
        i for i, row in enumerate(ROWS) if row not in CARRIED[fmt]
    ]

    result = read_rows(path)
    assert (result.format, result.file_type, result.errors) == (fmt, file_type, [])
    back = [row for _, row in result.rows]
    if fmt in LOSSLESS:
        assert back == CARRIED[fmt]
    else:
        # The input is folded into the user message and the category is not carried: what a
        # trainer sees is unchanged, and a row without either comes back equal.
        assert [r.messages() for r in back] == [r.messages() for r in CARRIED[fmt]]
        for original, imported in zip(CARRIED[fmt], back):
            if not original.input and not original.category:
                assert imported == original
    lines = [line for line, _ in result.rows]
    if file_type == "csv":
        assert lines[0] == 2 and lines == sorted(set(lines))
    else:
        assert lines == list(range(1, len(back) + 1))

    again = tmp_path / f"again.{file_type}"
    assert write_rows(back, again, format=fmt).refused == []
    assert again.read_bytes() == path.read_bytes()


# Any text a row may hold: everything but lone surrogates (not text) and NUL (refused, below).
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


def test_a_row_refuses_a_nul_character_in_any_text() -> None:
    for fields in (
        {"instruction": "a\x00b"},
        {"instruction": "q", "output": "\x00"},
        {"instruction": "q", "system": "s\x00"},
        {
            "instruction": "q",
            "history": [{"role": "user", "content": "\x00"}, {"role": "assistant", "content": "a"}],
        },
    ):
        with pytest.raises(ValidationError, match="NUL"):
            Row.model_validate(fields)


@st.composite
def rows(draw: st.DrawFn) -> Row:
    pairs = draw(st.lists(st.tuples(texts, texts), max_size=2))
    return Row(
        system=draw(texts),
        history=tuple(
            Turn(role=role, content=content)
            for user, assistant in pairs
            for role, content in (("user", user), ("assistant", assistant))
        ),
        instruction=draw(texts.filter(lambda t: t.strip() != "")),
        input=draw(texts),
        output=draw(texts),
        category=draw(texts),
    )


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(rows(), min_size=1, max_size=4))
def test_alpaca_keeps_any_text_in_every_file_type(generated: list[Row]) -> None:
    # Control characters, lone carriage returns, NULs and separators in any field survive.
    with tempfile.TemporaryDirectory() as tmp:
        for file_type in FILE_TYPES:
            path = Path(tmp) / f"rows.{file_type}"
            write_rows(generated, path, format=Format.ALPACA)
            result = read_rows(path)
            assert result.errors == []
            assert [row for _, row in result.rows] == generated


# --- the reference shapes, written by hand as the trainers document them -------------------------


def test_llama_factory_alpaca_json_with_system_and_history(tmp_path: Path) -> None:
    path = write(
        tmp_path / "alpaca_en_demo.json",
        """[
  {
    "instruction": "Describe a process of making crepes.",
    "input": "",
    "output": "Making crepes is an easy and delicious process!"
  },
  {
    "instruction": "user instruction (required)",
    "input": "user input (optional)",
    "output": "model response (required)",
    "system": "system prompt (optional)",
    "history": [
      ["user instruction in the first round (optional)", "model response in the first round (optional)"],
      ["user instruction in the second round (optional)", "model response in the second round (optional)"]
    ]
  }
]
""",
    )
    result = read_rows(path)
    assert result.format is Format.ALPACA and result.errors == []
    assert result.rows == [
        (
            1,
            Row(
                instruction="Describe a process of making crepes.",
                output="Making crepes is an easy and delicious process!",
            ),
        ),
        (
            2,
            Row(
                system="system prompt (optional)",
                history=(
                    Turn(role="user", content="user instruction in the first round (optional)"),
                    Turn(role="assistant", content="model response in the first round (optional)"),
                    Turn(role="user", content="user instruction in the second round (optional)"),
                    Turn(role="assistant", content="model response in the second round (optional)"),
                ),
                instruction="user instruction (required)",
                input="user input (optional)",
                output="model response (required)",
            ),
        ),
    ]


def test_dolly_15k_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "databricks-dolly-15k.jsonl",
        '{"instruction": "When did Virgin Australia start operating?", "context": "Virgin '
        "Australia, the trading name of Virgin Australia Airlines Pty Ltd, is an Australian-based "
        'airline. It commenced services on 31 August 2000 as Virgin Blue.", "response": "Virgin '
        'Australia commenced services on 31 August 2000 as Virgin Blue.", "category": "closed_qa"}\n'
        '{"instruction": "Which is a species of fish? Tope or Rope", "context": "", "response": '
        '"Tope", "category": "classification"}\n',
    )
    result = read_rows(path)
    assert result.format is Format.DOLLY and result.errors == []
    assert [row for _, row in result.rows] == [
        Row(
            instruction="When did Virgin Australia start operating?",
            input="Virgin Australia, the trading name of Virgin Australia Airlines Pty Ltd, is an "
            "Australian-based airline. It commenced services on 31 August 2000 as Virgin Blue.",
            output="Virgin Australia commenced services on 31 August 2000 as Virgin Blue.",
            category="closed_qa",
        ),
        Row(
            instruction="Which is a species of fish? Tope or Rope",
            output="Tope",
            category="classification",
        ),
    ]


def test_open_orca_lines_ignore_the_id(tmp_path: Path) -> None:
    path = write(
        tmp_path / "openorca.jsonl",
        '{"id": "niv.242684", "system_prompt": "You are an AI assistant. User will you give you a '
        'task.", "question": "Translate to French: Good morning.", "response": "Bonjour."}\n'
        '{"id": "t0.1051", "system_prompt": "", "question": "2 + 2 =", "response": "4"}\n',
    )
    result = read_rows(path)
    assert result.format is Format.ORCA and result.errors == []
    assert [row for _, row in result.rows] == [
        Row(
            system="You are an AI assistant. User will you give you a task.",
            instruction="Translate to French: Good morning.",
            output="Bonjour.",
        ),
        Row(instruction="2 + 2 =", output="4"),
    ]


def test_sharegpt_with_a_system_turn_or_a_top_level_system(tmp_path: Path) -> None:
    axolotl = write(
        tmp_path / "axolotl.jsonl",
        '{"conversations": [{"from": "system", "value": "You are helpful."}, '
        '{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello! How can I help?"}, '
        '{"from": "human", "value": "Reset the hub?"}, {"from": "gpt", "value": "Hold 5 s."}]}\n',
    )
    llama_factory = write(
        tmp_path / "llama_factory.json",
        """[
  {
    "conversations": [
      {"from": "human", "value": "Hi"},
      {"from": "gpt", "value": "Hello! How can I help?"},
      {"from": "human", "value": "Reset the hub?"},
      {"from": "gpt", "value": "Hold 5 s."}
    ],
    "system": "You are helpful.",
    "tools": ""
  }
]""",
    )
    expected = Row(
        system="You are helpful.",
        history=(
            Turn(role="user", content="Hi"),
            Turn(role="assistant", content="Hello! How can I help?"),
        ),
        instruction="Reset the hub?",
        output="Hold 5 s.",
    )
    for path in (axolotl, llama_factory):
        result = read_rows(path)
        assert result.format is Format.SHAREGPT
        assert result.rows == [(1, expected)] and result.errors == []
    # Export puts the system prompt in a first system turn, which both trainers read.
    assert record_of(expected, Format.SHAREGPT)["conversations"][0] == {
        "from": "system",
        "value": "You are helpful.",
    }


def test_sharegpt_accepts_user_and_assistant_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "chat.jsonl",
        '{"conversations": [{"from": "user", "value": "Q"}, {"from": "assistant", "value": "A"}]}\n',
    )
    assert read_rows(path).rows == [(1, Row(instruction="Q", output="A"))]


def test_openai_chat_fine_tuning_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train.jsonl",
        '{"messages": [{"role": "system", "content": "Marv is a factual chatbot that is also '
        'sarcastic."}, {"role": "user", "content": "What\'s the capital of France?"}, {"role": '
        '"assistant", "content": "Paris, as if everyone doesn\'t know that already."}]}\n',
    )
    result = read_rows(path)
    assert result.format is Format.OPENAI and result.errors == []
    assert result.rows == [
        (
            1,
            Row(
                system="Marv is a factual chatbot that is also sarcastic.",
                instruction="What's the capital of France?",
                output="Paris, as if everyone doesn't know that already.",
            ),
        )
    ]


def test_prompt_completion_pairs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "quotes.jsonl",
        '{"prompt": "The sky is", "completion": " blue."}\n'
        '{"prompt": "Be yourself; everyone else is", "completion": " already taken."}\n',
    )
    result = read_rows(path)
    assert result.format is Format.PROMPT_COMPLETION and result.errors == []
    assert [row for _, row in result.rows] == [
        Row(instruction="The sky is", output=" blue."),
        Row(instruction="Be yourself; everyone else is", output=" already taken."),
    ]


def test_csv_from_a_spreadsheet_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sheet.csv",
        "\ufeffinstruction,context,response,category\r\n"
        '"Opening hours?","Shop: 9–17 h, Mon–Fri",9–17 h,closed_qa\r\n',
    )
    result = read_rows(path)
    assert result.format is Format.DOLLY
    assert result.rows == [
        (
            2,
            Row(
                instruction="Opening hours?",
                input="Shop: 9–17 h, Mon–Fri",
                output="9–17 h",
                category="closed_qa",
            ),
        )
    ]


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "fmt"),
    [
        (["conversations", "system"], Format.SHAREGPT),
        (["messages"], Format.OPENAI),
        (["id", "system_prompt", "question", "response"], Format.ORCA),
        (["question", "response"], Format.ORCA),
        (["instruction", "context", "response", "category"], Format.DOLLY),
        (["prompt", "completion"], Format.PROMPT_COMPLETION),
        (["instruction", "input", "output"], Format.ALPACA),
        (["instruction", "output", "system", "history"], Format.ALPACA),
    ],
)
def test_the_format_is_detected_from_the_keys(keys: list[str], fmt: Format) -> None:
    assert detect_format(keys) is fmt


def test_detection_uses_the_first_valid_record_and_the_csv_header(tmp_path: Path) -> None:
    jsonl = write(
        tmp_path / "a.jsonl",
        'not json\n{"messages": [{"role": "user", "content": "Q"}, '
        '{"role": "assistant", "content": "A"}]}\n',
    )
    result = read_rows(jsonl)
    assert result.format is Format.OPENAI
    assert result.rows == [(2, Row(instruction="Q", output="A"))]
    assert [e.line for e in result.errors] == [1]
    header_only = write(tmp_path / "b.csv", "prompt,completion\r\n")
    assert read_rows(header_only).format is Format.PROMPT_COMPLETION


def test_format_and_file_type_can_be_given(tmp_path: Path) -> None:
    path = write(tmp_path / "export.txt", '{"instruction": "Q", "response": "A"}\n')
    result = read_rows(path, format="dolly", file_type="jsonl")
    assert (result.format, result.file_type) == (Format.DOLLY, "jsonl")
    assert result.rows == [(1, Row(instruction="Q", output="A"))]
    # Given explicitly, a format is not second-guessed: these keys read as alpaca miss "output".
    assert read_rows(path, format=Format.ALPACA, file_type="jsonl").errors == [
        LineError(1, "missing 'output'")
    ]


def test_an_unknown_shape_names_the_keys_and_the_known_formats(tmp_path: Path) -> None:
    path = write(tmp_path / "pretrain.jsonl", '{"text": "raw text", "meta": {}}\n')
    with pytest.raises(FormatError) as error:
        read_rows(path)
    message = str(error.value)
    assert "['meta', 'text']" in message and "line 1" in message
    for fmt in Format:
        assert fmt.value in message
    assert set(FORMATS) == set(Format)


# --- bad lines ----------------------------------------------------------------------------------


def test_bad_lines_are_reported_by_number_and_the_rest_is_imported(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.jsonl",
        "\n".join(
            [
                '{"instruction": "Q1", "input": "", "output": "A1"}',
                '{"instruction": "Q2", "output": ',
                '{"instruction": "Q3"}',
                '{"instruction": "   ", "output": "A4"}',
                '{"instruction": "Q5", "output": 5}',
                "",
                "[1, 2]",
                '{"instruction": "Q8", "output": "A8", "history": [["only the user"]]}',
                '{"instruction": "Q9", "output": "A9", "system": null}',
            ]
        )
        + "\n",
    )
    result = read_rows(path)
    assert result.rows == [
        (1, Row(instruction="Q1", output="A1")),
        (9, Row(instruction="Q9", output="A9")),
    ]
    assert [e.line for e in result.errors] == [2, 3, 4, 5, 7, 8]
    assert result.errors[0].reason.startswith("invalid JSON: ")
    assert result.errors[1:] == [
        LineError(3, "missing 'output'"),
        LineError(4, "'instruction' is empty"),
        LineError(5, "'output' must be a string, got number"),
        LineError(7, "expected a JSON object, got array"),
        LineError(8, "history item 1 must be a [user, assistant] pair of strings"),
    ]


def test_broken_conversations_are_reported(tmp_path: Path) -> None:
    def line(*turns: tuple[str, str | None]) -> str:
        conversation = [{"from": who, "value": value} for who, value in turns]
        return orjson.dumps({"conversations": conversation}).decode()

    path = write(
        tmp_path / "chats.jsonl",
        "\n".join(
            [
                line(("human", "Q"), ("gpt", "A")),
                line(("human", "Q"), ("gpt", "A"), ("human", "Q2")),
                line(("human", "Q"), ("human", "Q again"), ("gpt", "A")),
                line(("bing", "Q"), ("gpt", "A")),
                line(("human", "Q"), ("gpt", "A"), ("system", "late"), ("human", "Q2")),
                '{"conversations": []}',
                line(("human", "Q"), ("gpt", None)),
                line(("human", " "), ("gpt", "A")),
                '{"conversations": "hi"}',
            ]
        )
        + "\n",
    )
    result = read_rows(path)
    assert result.rows == [(1, Row(instruction="Q", output="A"))]
    assert result.errors == [
        LineError(2, "'conversations' ends with a human turn; the gpt answer is missing"),
        LineError(3, "conversations item 2 is from human; turns must alternate, human first"),
        LineError(
            4,
            "conversations item 1 has from 'bing'; expected one of system, human, user, gpt, assistant",
        ),
        LineError(5, "conversations item 3 is a system turn; only the first turn may be one"),
        LineError(6, "'conversations' holds no human turn"),
        LineError(7, "conversations item 2: 'value' must be a string, got null"),
        LineError(8, "the last human turn is empty"),
        LineError(9, "'conversations' must be a list of turns, got string"),
    ]


def test_openai_lines_with_what_a_row_cannot_hold(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tools.jsonl",
        '{"messages": [{"role": "user", "content": "Q"}, {"role": "tool", "content": "{}"}]}\n'
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "Q"}]}]}\n'
        '{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]}\n',
    )
    assert read_rows(path).errors == [
        LineError(1, "messages item 2 has role 'tool'; expected one of system, user, assistant"),
        LineError(2, "messages item 1: 'content' must be a string, got array"),
        LineError(3, "'messages' ends with a user turn; the assistant answer is missing"),
    ]


def test_csv_bad_records_are_reported_at_the_line_they_start_on(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.csv",
        "instruction,input,output,history\n"
        "Q1,,A1,\n"
        "Q2,,A2\n"
        '"Q3\nspans two lines",,A3,\n'
        "Q4,,A4,[[oops\n"
        ",,A5,\n"
        'Q6,,A6,"[[""u"",""a""]]"\n',
    )
    result = read_rows(path)
    assert result.rows == [
        (2, Row(instruction="Q1", output="A1")),
        (4, Row(instruction="Q3\nspans two lines", output="A3")),
        (
            8,
            Row(
                history=(Turn(role="user", content="u"), Turn(role="assistant", content="a")),
                instruction="Q6",
                output="A6",
            ),
        ),
    ]
    assert [e.line for e in result.errors] == [3, 6, 7]
    assert result.errors[0] == LineError(3, "has 3 fields; the header has 4")
    assert result.errors[1].reason.startswith("column 'history' is not valid JSON: ")
    assert result.errors[2] == LineError(7, "'instruction' is empty")


def test_json_elements_are_numbered(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.json",
        '[{"instruction": "Q", "output": "A"}, 3, {"instruction": "Q3"}]',
    )
    result = read_rows(path)
    assert result.rows == [(1, Row(instruction="Q", output="A"))]
    assert result.errors == [
        LineError(2, "expected a JSON object, got number"),
        LineError(3, "missing 'output'"),
    ]


def test_iter_rows_streams_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "stream.jsonl",
        b'{"prompt": "P1", "completion": "C1"}\n{"prompt": 1, "completion": "C2"}\n'
        b'{"prompt": "P3", "completion": "C3"}\n\xff\xfe broken\n',
    )
    stream = iter_rows(path)
    assert next(stream) == (1, Row(instruction="P1", output="C1"))
    assert next(stream) == LineError(2, "'prompt' must be a string, got number")
    assert next(stream) == (3, Row(instruction="P3", output="C3"))
    # A whole-file problem further on surfaces when the stream reaches it.
    with pytest.raises(FormatError, match="not UTF-8 text \\(line 4"):
        next(stream)


def test_row_of_gives_readable_reasons() -> None:
    assert row_of({"question": "Q", "response": "A", "id": 7}, Format.ORCA) == Row(
        instruction="Q", output="A"
    )
    with pytest.raises(ValueError, match="^'category' must be a string, got boolean$"):
        row_of({"instruction": "Q", "response": "A", "category": True}, Format.DOLLY)
    with pytest.raises(ValueError, match="convert it to the openai format"):
        record = {"prompt": [{"role": "user", "content": "Q"}], "completion": "A"}
        row_of(record, Format.PROMPT_COMPLETION)


# --- whole-file problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "latin1.jsonl",
            b'{"prompt": "ok", "completion": "ok"}\n{"prompt": "caf\xe9"}\n',
            "latin1.jsonl is not UTF-8 text (line 2, byte 0xe9",
        ),
        (
            "latin1.json",
            b'[{"prompt": "caf\xe9", "completion": "ok"}]',
            "is not UTF-8 text (byte 0xe9",
        ),
        ("latin1.csv", b"prompt,completion\ncaf\xe9,ok\n", "is not UTF-8 text (byte 0xe9"),
        (
            "utf16.jsonl",
            '{"prompt": "P", "completion": "C"}\n'.encode("utf-16"),
            "is not UTF-8 text",
        ),
        (
            "object.json",
            b'{"instruction": "Q", "output": "A"}',
            "holds a JSON object; expected an array of objects",
        ),
        (
            "lines.json",
            b'{"instruction": "Q", "output": "A"}\n{"instruction": "Q", "output": "A"}\n',
            "is not one JSON document",
        ),
        ("empty.jsonl", b"", "empty.jsonl is empty"),
        ("blank.jsonl", b"\n  \n", "blank.jsonl is empty"),
        ("empty.json", b" \n", "empty.json is empty"),
        ("empty.csv", b"", "empty.csv is empty"),
        (
            "bad.jsonl",
            b"nope\n[]\n",
            "no valid record to tell the format from (line 1: invalid JSON",
        ),
        ("empty-array.json", b"[]", "empty-array.json holds no records"),
        (
            "unknown.csv",
            b"text,label\nhi,1\n",
            "cannot tell the format from the keys ['label', 'text']",
        ),
        ("rows.parquet", b"PAR1", "cannot tell the file type from the extension '.parquet'"),
    ],
)
def test_whole_file_problems_raise_a_readable_format_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(FormatError) as error:
        read_rows(path)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_a_csv_without_the_columns_of_the_given_format(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.csv", "instruction,context\nQ,C\n")
    with pytest.raises(
        FormatError, match="lacks response, needed by dolly; it has instruction, context"
    ):
        read_rows(path, format=Format.DOLLY)


def test_unknown_format_and_file_type_names(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    with pytest.raises(FormatError, match="unknown format 'chatml'; known formats: alpaca, dolly"):
        write_rows([PLAIN], path, format="chatml")
    with pytest.raises(FormatError, match="unknown file type 'xlsx'; known: jsonl, json, csv"):
        read_rows(path, file_type="xlsx")
    assert not path.exists()


# --- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_export_refuses_what_a_format_cannot_carry_and_writes_the_rest(
    tmp_path: Path, file_type: str
) -> None:
    both = Row(system="S", history=FULL.history, instruction="Q", output="A")
    path = tmp_path / f"dolly.{file_type}"
    result = write_rows([PLAIN, SYSTEM_ONLY, FULL, both, CATEGORY_ONLY], path, format="dolly")
    assert result.written == 2
    assert result.refused == [
        Refusal(
            1,
            "dolly cannot carry a system prompt, which this row has; "
            "export it as alpaca, orca, sharegpt or openai",
        ),
        Refusal(
            2,
            "dolly cannot carry a system prompt and 2 earlier turns, which this row has; "
            "export it as alpaca, sharegpt or openai",
        ),
        Refusal(
            3,
            "dolly cannot carry a system prompt and 2 earlier turns, which this row has; "
            "export it as alpaca, sharegpt or openai",
        ),
    ]
    assert [row for _, row in read_rows(path).rows] == [PLAIN, CATEGORY_ONLY]
    # Orca has a system prompt but no earlier turns.
    orca = write_rows([SYSTEM_ONLY, FULL], tmp_path / f"orca.{file_type}", format="orca")
    assert (orca.written, [r.index for r in orca.refused]) == (1, [1])
    assert orca.refused[0].reason.startswith("orca cannot carry 2 earlier turns")


@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_text_no_utf8_file_can_hold_is_refused(tmp_path: Path, file_type: str) -> None:
    # Only a row built without validation can hold a lone surrogate; it must not sink the export.
    broken = Row.model_construct(instruction="half an emoji \ud83d", output="A")
    path = tmp_path / f"rows.{file_type}"
    result = write_rows([PLAIN, broken], path, format=Format.ALPACA)
    assert result.written == 1
    assert [r.index for r in result.refused] == [1]
    assert "not valid Unicode" in result.refused[0].reason
    assert [row for _, row in read_rows(path).rows] == [PLAIN]


def test_a_failed_export_leaves_no_partial_file(tmp_path: Path) -> None:
    def rows_until_the_database_goes_away() -> Iterator[Row]:
        yield PLAIN
        yield FULL
        raise ConnectionError("database went away")

    new = tmp_path / "new.jsonl"
    with pytest.raises(ConnectionError):
        write_rows(rows_until_the_database_goes_away(), new, format=Format.ALPACA)
    assert list(tmp_path.iterdir()) == []

    old = write(tmp_path / "old.csv", "prompt,completion\r\nP,C\r\n")
    with pytest.raises(ConnectionError):
        write_rows(rows_until_the_database_goes_away(), old, format=Format.ALPACA)
    assert list(tmp_path.iterdir()) == [old]
    assert old.read_bytes() == b"prompt,completion\r\nP,C\r\n"


def test_an_export_keeps_a_replaced_files_mode_and_makes_a_new_one_private(tmp_path: Path) -> None:
    shared = write(tmp_path / "shared.jsonl", "")
    os.chmod(shared, 0o644)
    write_rows([PLAIN], shared, format=Format.ALPACA)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    new = tmp_path / "new.jsonl"
    write_rows([PLAIN], new, format=Format.ALPACA)
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_json_export_puts_one_element_per_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    write_rows([PLAIN, CATEGORY_ONLY], path, format=Format.PROMPT_COMPLETION)
    assert path.read_text() == (
        "[\n"
        '{"prompt":"Plain question, with a comma","completion":"An answer with \\"quotes\\", too"},\n'
        '{"prompt":"Is it waterproof?","completion":"IP67: yes."}\n'
        "]\n"
    )
    empty = tmp_path / "none.json"
    assert write_rows([], empty, format=Format.ALPACA).written == 0
    assert empty.read_text() == "[]\n"
    assert read_rows(empty, format=Format.ALPACA).rows == []
