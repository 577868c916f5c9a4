"""Builds the serving backend the settings ask for (imports heavy engines only when chosen)."""

from __future__ import annotations

from api.settings import Settings
from serving.backend import Backend


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "openai":
        from serving.openai_backend import OpenAIBackend

        assert settings.upstream_url is not None  # enforced by Settings
        key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else "none"
        return OpenAIBackend(
            base_url=settings.upstream_url, api_key=key, model=settings.model, timeout=settings.backend_timeout_s
        )
    from serving.transformers_backend import TransformersBackend

    return TransformersBackend(
        settings.model,
        max_batch_size=settings.max_batch_size,
        torch_threads=settings.torch_threads,
        # A GGUF is converted to an HF folder once; later starts load that in under a second.
        cache_dir=settings.data_dir / "models",
    )
