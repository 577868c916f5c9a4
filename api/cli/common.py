"""What every command shares: the consoles, the settings, the runtime (the same composition root as
the server's), error exits, and option help taken from the pydantic models the API validates with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import ApiError
from api.runtime import Runtime, build_runtime
from api.settings import Settings

console = Console()
err = Console(stderr=True)

T = TypeVar("T")


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment; `overrides` (command-line options) win over it."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # pydantic's message names the bad variable
        err.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def fail(exc: BaseException) -> NoReturn:
    """Exit with a clear message: 1 for an operation the service refused, 2 for invalid input.
    Anything else is a bug and keeps its traceback."""
    if isinstance(exc, ApiError):
        err.print(f"[red]Error:[/red] {exc.message}", soft_wrap=True)
        raise typer.Exit(1) from exc
    if isinstance(exc, ValidationError):
        raise invalid(exc) from exc
    raise exc


def invalid(exc: ValidationError, what: str = "") -> typer.Exit:
    """Exit code 2, naming the first invalid field as the option a user types."""
    first = exc.errors()[0]
    # The option a user typed: the innermost named field (knowledge.top_k is --top-k).
    field = next((str(part) for part in reversed(first["loc"]) if isinstance(part, str)), "value")
    prefix = f"Invalid {what}: " if what else "Invalid "
    err.print(f"[red]{prefix}[/red]--{field.replace('_', '-')}: {first['msg']}", soft_wrap=True)
    return typer.Exit(2)


def help_of(model: type[BaseModel], field: str) -> str:
    """The field's description, so CLI help and the API documentation say the same."""
    return model.model_fields[field].description or ""


def run(work: Callable[[Runtime], Awaitable[T]], *, backend: bool = False) -> T:
    """Run `work` on a started runtime (the backend too when `backend`), then stop it. Service
    errors exit cleanly (see `fail`)."""

    async def main() -> T:
        runtime = build_runtime(load_settings())
        await runtime.start(backend=backend)
        try:
            return await work(runtime)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(main())
    except (ApiError, ValidationError) as exc:
        fail(exc)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction on a started runtime (no backend): commits on success, and service errors
    exit cleanly."""
    runtime = build_runtime(load_settings())
    asyncio.run(runtime.start(backend=False))
    try:
        with transaction(runtime.sessions) as session:
            yield session
    except (ApiError, ValidationError) as exc:
        fail(exc)
    finally:
        asyncio.run(runtime.stop())


def json_option(value: str | None, name: str) -> Any:
    """A JSON option's value, or exit 2 naming the option."""
    import json

    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        err.print(f"[red]Invalid --{name} JSON:[/red] {exc}")
        raise typer.Exit(2) from exc


class IdTable(Table):
    """A table whose id columns are never cut or wrapped, whatever the terminal's width (people
    copy them into the next command); the other columns wrap instead."""

    def __init__(self, *headers: str, ids: Collection[str] = ()) -> None:
        self._ids = {i for i, h in enumerate(headers) if h in ids}
        super().__init__(
            *(
                Column(h, no_wrap=True) if i in self._ids else Column(h, overflow="fold")
                for i, h in enumerate(headers)
            )
        )

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        for i in self._ids:
            column = self.columns[i]
            column.min_width = max(column.min_width or 0, len(str(cells[i])))
        super().add_row(*cells, **kwargs)
