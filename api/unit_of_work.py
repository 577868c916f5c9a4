"""Side effects after commit, in one place.

Services say what they changed on the session (`changed(session, ACCESS)`); when the transaction
commits, one hook hears every change once and acts (drops cached key and bot lookups, reloads a
bot's annotations, wakes the job worker). A transaction that rolls back fires nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

#: A key, bot, release alias or a bot's documents changed: cached access lookups are stale.
ACCESS: Final = "access"
#: A job was queued: the worker should look now rather than at its next poll.
JOBS: Final = "jobs"

Change = str | tuple[str, str]
_KEY = "shadowdesk.changes"


def annotations_of(bot_id: str) -> Change:
    """The annotations of `bot_id` changed."""
    return ("annotations", bot_id)


def changed(session: Session, *changes: Change) -> None:
    """Record changes made in `session`'s transaction; they take effect once it commits."""
    session.info.setdefault(_KEY, set()).update(changes)


def pending(session: Session) -> frozenset[Change]:
    """What `session`'s open transaction has recorded so far."""
    return frozenset(session.info.get(_KEY, ()))


def install_after_commit(
    sessions: sessionmaker[Session], on_commit: Callable[[Iterable[Change]], None]
) -> None:
    """Call `on_commit(changes)` after each commit of a session from `sessions` that recorded any."""

    def after_commit(session: Session) -> None:
        pending = session.info.pop(_KEY, None)
        if pending:
            on_commit(pending)

    def after_rollback(session: Session) -> None:
        session.info.pop(_KEY, None)

    event.listen(sessions, "after_commit", after_commit)
    event.listen(
        sessions, "after_soft_rollback", lambda session, _previous: after_rollback(session)
    )
