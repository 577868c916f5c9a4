"""A realistic documentation corpus for the knowledge benchmarks, built offline from the Python
standard library's docstrings: one Markdown file per module, a heading per function or class,
its signature as a code block and its docstring as prose."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

MODULES = [
    "json",
    "csv",
    "pathlib",
    "argparse",
    "logging",
    "datetime",
    "collections",
    "itertools",
    "functools",
    "subprocess",
    "shutil",
    "re",
    "string",
    "textwrap",
    "statistics",
    "random",
    "decimal",
    "fractions",
    "heapq",
    "bisect",
    "email.message",
    "http.client",
    "urllib.parse",
    "zipfile",
    "tarfile",
    "sqlite3",
    "threading",
    "asyncio.tasks",
    "unittest.case",
    "difflib",
    "calendar",
    "configparser",
    "contextlib",
    "dataclasses",
    "enum",
    "fnmatch",
    "glob",
    "gzip",
    "hashlib",
    "hmac",
    "inspect",
    "io",
    "ipaddress",
    "locale",
    "mimetypes",
    "operator",
    "pickle",
    "pprint",
    "queue",
    "secrets",
    "selectors",
    "socket",
    "ssl",
    "tempfile",
    "timeit",
    "traceback",
    "typing",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "zoneinfo",
]


def module_markdown(name: str) -> str | None:
    """One module's documentation as Markdown, or None if it has too little."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    parts = [f"# {name}\n", inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj)
        if not doc or len(doc) < 80:
            continue
        try:
            signature = f"{attr}{inspect.signature(obj)}"
        except (TypeError, ValueError):
            signature = attr
        parts.append(f"\n## {attr}\n\n```python\n{signature}\n```\n\n{doc}\n")
    text = "\n".join(parts)
    return text if len(text) > 2000 else None


def write_corpus(target: Path, max_chars: int) -> list[Path]:
    """Write module docs to `target` until about `max_chars` characters; return the files."""
    target.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    total = 0
    for name in MODULES:
        text = module_markdown(name)
        if text is None:
            continue
        text = text[: max_chars - total] if total + len(text) > max_chars else text
        path = target / f"{name}.md"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
        total += len(text)
        if total >= max_chars:
            break
    return paths
