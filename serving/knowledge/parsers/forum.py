"""Support-forum exports (JSON or CSV of threads): each answered thread becomes one Q&A block.

The question is kept together with the accepted answer (or, failing that, the staff answers), so
retrieval returns the answer along with the question it answers. Unanswered threads carry no
knowledge and are left out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from serving.knowledge.parsers.document import Block, DocumentError, Section

_THREAD_LISTS = ("threads", "topics", "questions", "items", "data")
_POST_LISTS = ("posts", "replies", "answers", "messages", "comments")
_TEXT_KEYS = ("body", "text", "content", "message", "question")
_TITLE_KEYS = ("title", "subject", "question_title", "topic")
_ID_KEYS = ("thread_id", "topic_id", "thread", "question_id")
_ACCEPTED_KEYS = ("accepted", "is_accepted", "accepted_answer", "is_solution", "solution")
_STAFF_KEYS = ("is_staff", "staff", "author_is_staff", "is_employee", "official")
_STAFF_ROLES = frozenset(
    {"staff", "admin", "administrator", "moderator", "employee", "agent", "support"}
)
_TRUE = frozenset({"true", "yes", "y", "1", "x"})


@dataclass
class _Post:
    text: str
    accepted: bool = False
    staff: bool = False
    post_id: str = ""


@dataclass
class _Thread:
    title: str
    question: str = ""
    replies: list[_Post] = field(default_factory=list)
    accepted_id: str = ""


def _too_many(count: int, source: str, max_rows: int | None) -> None:
    if max_rows is not None and count > max_rows:
        raise DocumentError(
            "too_many_rows", f"{source}: more than {max_rows} posts; split the export"
        )


def parse_forum_json(
    text: str, source: str, max_rows: int | None = None
) -> tuple[str, list[Section]]:
    """(forum name or "", sections: one per answered thread) from a JSON export."""
    try:
        payload = json.loads(text)
    except RecursionError as exc:
        raise DocumentError("invalid_export", f"{source}: JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise DocumentError(
            "invalid_export", f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from exc
    items = _thread_items(payload)
    if items is None:
        raise DocumentError(
            "invalid_export",
            f"{source}: expected a list of threads or an object with a 'threads' list",
        )
    _too_many(len(items), source, max_rows)
    posts = sum(
        len(next((i[k] for k in _POST_LISTS if isinstance(i.get(k), list)), []))
        for i in items
        if isinstance(i, Mapping)
    )
    _too_many(posts, source, max_rows)
    threads = [t for t in (_thread_from_json(i) for i in items if isinstance(i, Mapping)) if t]
    name = _first(payload, ("forum", "title", "name")) if isinstance(payload, Mapping) else ""
    return name, _sections(threads, source)


def parse_forum_csv(text: str, source: str, max_rows: int | None = None) -> list[Section]:
    """Sections from a CSV export with one row per post and a thread id column."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        id_col = next((fields[k] for k in _ID_KEYS if k in fields), None)
        text_col = next((fields[k] for k in _TEXT_KEYS if k in fields), None)
        if id_col is None or text_col is None:
            raise DocumentError(
                "invalid_export",
                f"{source}: a forum CSV needs a thread id column ({', '.join(_ID_KEYS)}) and a "
                f"text column ({', '.join(_TEXT_KEYS)})",
            )
        threads: dict[str, _Thread] = {}
        for count, row in enumerate(reader, start=1):
            _too_many(count, source, max_rows)
            lowered = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            thread_id = (row.get(id_col) or "").strip()
            body = (row.get(text_col) or "").strip()
            if not thread_id or not body:
                continue
            thread = threads.setdefault(thread_id, _Thread(title=_first(lowered, _TITLE_KEYS)))
            thread.title = thread.title or _first(lowered, _TITLE_KEYS)
            kind = (lowered.get("post_type") or lowered.get("type") or "").lower()
            is_question = kind == "question" or _truthy(lowered.get("is_question"))
            if is_question or (not thread.question and kind != "answer"):
                thread.question = body
            else:
                thread.replies.append(_post(lowered, body))
    except csv.Error as exc:
        raise DocumentError("invalid_export", f"{source}: malformed CSV ({exc})") from exc
    return _sections(list(threads.values()), source)


def _thread_items(payload: Any) -> list[Any] | None:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        for key in _THREAD_LISTS:
            items = payload.get(key)
            if isinstance(items, list):
                return items
    return None


def _thread_from_json(item: Mapping[str, Any]) -> _Thread | None:
    thread = _Thread(
        title=_first(item, _TITLE_KEYS), accepted_id=str(item.get("accepted_answer_id") or "")
    )
    question = item.get("question")
    thread.question = (
        _text_of(question) if question is not None else _first(item, ("body", "text", "content"))
    )
    posts: list[Any] = next((item[k] for k in _POST_LISTS if isinstance(item.get(k), list)), [])
    for raw in posts:
        if not isinstance(raw, Mapping):
            continue
        body = _first(raw, _TEXT_KEYS)
        if not body:
            continue
        if not thread.question and (raw.get("type") == "question" or raw.get("is_question")):
            thread.question = body
            continue
        thread.replies.append(_post(raw, body))
    if not thread.question and thread.replies:
        # Flat exports put the question first among the posts.
        thread.question = thread.replies.pop(0).text
    return thread if (thread.title or thread.question) else None


def _post(raw: Mapping[str, Any], body: str) -> _Post:
    author = raw.get("author")
    role = str(raw.get("role") or raw.get("author_role") or "")
    if isinstance(author, Mapping):
        role = role or str(author.get("role") or "")
    staff = any(_truthy(raw.get(k)) for k in _STAFF_KEYS) or role.strip().lower() in _STAFF_ROLES
    if isinstance(author, Mapping):
        staff = staff or any(_truthy(author.get(k)) for k in _STAFF_KEYS)
    accepted = any(_truthy(raw.get(k)) for k in _ACCEPTED_KEYS)
    return _Post(body, accepted=accepted, staff=staff, post_id=str(raw.get("id") or ""))


def _sections(threads: Iterable[_Thread], source: str) -> list[Section]:
    sections: list[Section] = []
    seen_threads = 0
    for thread in threads:
        seen_threads += 1
        for post in thread.replies:
            post.accepted = post.accepted or (
                bool(thread.accepted_id) and post.post_id == thread.accepted_id
            )
        accepted = [p for p in thread.replies if p.accepted]
        chosen, label = (
            (accepted, "Accepted answer")
            if accepted
            else (
                [p for p in thread.replies if p.staff],
                "Staff answer",
            )
        )
        if not chosen or not thread.question:
            continue
        title = " ".join((thread.title or thread.question.split("\n")[0][:80]).split())
        answer = "\n\n".join(p.text for p in chosen)
        text = f"Question: {title}\n{thread.question}\n\n{label}: {answer}"
        sections.append(Section(heading_path=(title,), blocks=[Block("qa", text)]))
    if not seen_threads:
        raise DocumentError("invalid_export", f"{source}: the export contains no threads")
    if not sections:
        raise DocumentError(
            "empty", f"{source}: none of the {seen_threads} threads has an accepted or staff answer"
        )
    return sections


def _first(mapping: Mapping[str, Any], keys: Iterable[str]) -> str:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, "") and not isinstance(value, (Mapping, list)):
            return str(value).strip()
    return ""


def _text_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return _first(value, _TEXT_KEYS)
    return str(value).strip()


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in _TRUE
