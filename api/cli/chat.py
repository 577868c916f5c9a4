"""`shadowdesk chat BOT`: talk to a bot in the terminal, answers streaming as they are generated,
with their sources; in process (the same chat service the server runs) or against a running server."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any, cast

import typer

from api.cli.common import err, load_settings


def chat(
    bot: Annotated[str, typer.Argument(help="Slug of the bot to talk to.")],
    url: Annotated[
        str | None, typer.Option(help="Talk to a running server instead of loading the model here.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="SHADOWDESK_API_KEY", help="API key for --url.")
    ] = None,
) -> None:
    """Chat with a bot in the terminal; answers stream as they are generated. Ctrl-D or 'exit' quits."""
    if url:
        asyncio.run(_chat_remote(bot, url, key))
    else:
        asyncio.run(_chat_local(bot))


def _read_line() -> str | None:
    try:
        line = input("\nyou> ")
    except EOFError:
        return None
    return None if line.strip() in {"exit", "quit"} else line


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _show_sources(citations: list[dict[str, Any]] | None, refused: bool) -> None:
    if refused:
        err.print("[dim](refused: outside this bot's scope)[/dim]")
    for c in citations or []:
        where = " › ".join([c["document"], *c.get("heading_path", [])])
        page = f", p. {c['page']}" if c.get("page") is not None else ""
        err.print(f"[dim][{c['marker']}] {where}{page}[/dim]", soft_wrap=True)


async def _chat_local(slug: str) -> None:
    from api.errors import ApiError
    from api.runtime import build_runtime
    from api.schemas.openai import ChatCompletionRequest
    from api.services.access.cache import KeyGrant
    from api.services.chat.events import AnswerDone, AnswerFailed, AnswerText
    from api.services.chat.service import ChatService

    runtime = build_runtime(load_settings())
    err.print("loading the model…")
    await runtime.start()
    service = ChatService(runtime)
    terminal = KeyGrant(id=None, is_admin=True, bot_ids=frozenset())
    history: list[dict[str, str]] = []
    conversation_id: str | None = None
    try:
        while (line := _read_line()) is not None:
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            try:
                request = ChatCompletionRequest.model_validate(
                    {"model": slug, "messages": history, "stream": True}
                )
                answer = await service.answer(
                    request, token=None, conversation_id=conversation_id, grant=terminal
                )
            except ApiError as exc:
                err.print(f"[red]{exc.message}[/red]")
                history.pop()
                continue
            conversation_id = answer.turn.conversation_id
            _write(f"{slug}> ")
            parts: list[str] = []
            async for event in answer.events:
                if isinstance(event, AnswerText):
                    parts.append(event.text)
                    _write(event.text)
                elif isinstance(event, AnswerFailed):
                    err.print(f"\n[red]{event.error.message}[/red]")
                elif isinstance(event, AnswerDone):
                    _write("\n")
                    _show_sources(event.citations, event.refused)
            history.append({"role": "assistant", "content": "".join(parts)})
    finally:
        await runtime.stop()


async def _chat_remote(slug: str, url: str, key: str | None) -> None:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key=key or "missing") as client:
        await _converse_remote(client, slug)


async def _converse_remote(client: Any, slug: str) -> None:
    from openai import APIError
    from openai.types.chat import ChatCompletionMessageParam

    history: list[dict[str, str]] = []
    conversation_id: str | None = None
    while (line := _read_line()) is not None:
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        headers = {"X-Conversation-Id": conversation_id} if conversation_id else {}
        try:
            response = await client.chat.completions.with_raw_response.create(
                model=slug,
                messages=cast(list[ChatCompletionMessageParam], history),
                stream=True,
                extra_headers=headers,
            )
            conversation_id = response.headers.get("x-conversation-id", conversation_id)
            _write(f"{slug}> ")
            parts: list[str] = []
            citations, refused = None, False
            stream = response.parse()
            async for chunk in stream:
                extra = chunk.model_extra or {}
                citations = extra.get("citations", citations)
                refused = refused or bool(extra.get("refused"))
                for choice in chunk.choices:
                    text = choice.delta.content or ""
                    parts.append(text)
                    _write(text)
            _write("\n")
            _show_sources(citations, refused)
            history.append({"role": "assistant", "content": "".join(parts)})
        except APIError as exc:
            err.print(f"[red]{exc.message}[/red]")
            history.pop()
