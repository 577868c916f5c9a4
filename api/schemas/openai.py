"""Wire models of the OpenAI-compatible surface, named exactly as OpenAI names them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Parameters OpenAI defines that we refuse rather than silently ignore.
UNSUPPORTED_PARAMS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)


def _encodable(value: str) -> str:
    """JSON can carry a lone UTF-16 surrogate (`"\\ud800"`), which no database can store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text contains an unpaired surrogate; it is not valid Unicode") from exc
    return value


Text = Annotated[str, AfterValidator(_encodable)]
# What may travel in a response header and a log line: visible ASCII, no spaces, no control bytes.
CONVERSATION_ID = r"^[!-~]{1,200}$"
# Strict types on the wire: "5" is not a number and "yes" is not a boolean.
_WIRE = ConfigDict(extra="forbid", strict=True)


class TextPart(BaseModel):
    model_config = _WIRE
    type: Literal["text"]
    text: Text


class ChatMessageIn(BaseModel):
    model_config = _WIRE
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart]
    name: Annotated[Text, Field(max_length=200)] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = _WIRE
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # OpenAI itself rejects unknown arguments; so do we (a typo must not be silently ignored).
    model_config = _WIRE

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: list[ChatMessageIn]
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    # What a 64-bit generator seed can hold.
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    user: Annotated[Text, Field(max_length=256)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    metadata: (
        Annotated[dict[str, Annotated[Text, Field(max_length=512)]], Field(max_length=16)] | None
    ) = None
    store: bool | None = None
    # Extension: pin the conversation (also accepted as the X-Conversation-Id header).
    conversation_id: Annotated[str, Field(pattern=CONVERSATION_ID)] | None = None

    # Declared so a client sending them gets a clear "unsupported" error instead of "extra field".
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    logit_bias: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        if any(len(s) > 100 for s in stops):
            raise ValueError("a stop sequence may be at most 100 characters")
        return [_encodable(s) for s in stops]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Citation(BaseModel):
    """Extension: a source passage the answer was grounded on ([marker] in the answer)."""

    marker: int
    document: str
    title: str = ""
    heading_path: list[str] = []
    page: int | None = None
    score: float
    chunk_id: str | None = None
    doc_id: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    """The answer of `POST /v1/chat/completions` without `stream`."""

    id: str = Field(description="The stored exchange's id.")
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(description="The bot's slug.")
    choices: list[Choice]
    usage: Usage
    # Extensions (ignored by OpenAI clients, available as extra fields).
    conversation_id: str | None = None
    citations: list[Citation] | None = Field(None, description="Sources of a grounded answer.")
    refused: bool | None = Field(None, description="True when the bot refused (out of scope).")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer (`data: {...}`), then `data: [DONE]`. The last
    chunk with a `finish_reason` carries the extensions; with `stream_options.include_usage` a final
    chunk with no choices carries the usage."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    citations: list[Citation] | None = None
    refused: bool | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "shadowdesk"
    name: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
