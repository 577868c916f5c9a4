"""`VLLMBackend`: releases served by a vLLM server, one base model with many LoRA adapters.

The wire is vLLM's OpenAI-compatible API (`OpenAIBackend`); each release's adapter is a LoRA module
loaded at run time under its immutable name (`/v1/load_lora_adapter`) and asked for by that name.
The server is either one the operator runs (a URL) or a local one this backend starts and supervises
(`VLLMServer`). Either way the gateway is the only client: vLLM's own key check covers only some of
its routes, so it must never be reachable by clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from serving.openai_backend import OpenAIBackend
from serving.vllm_server import VLLMServer


class VLLMBackend(OpenAIBackend):
    kind = "vllm"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        server: VLLMServer | None = None,
        timeout: float = 60.0,
        max_connections: int = 256,
    ) -> None:
        if (base_url is None) == (server is None):
            raise ValueError("give either the URL of a running vLLM server or a server to start")
        if server is not None:
            base_url, api_key = server.url + "/v1", server.api_key
        assert base_url is not None
        super().__init__(base_url, model, api_key, timeout=timeout, max_connections=max_connections)
        self.server = server

    async def start(self) -> None:
        if self.server is not None:
            await self.server.start()
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self.server is not None:
            await self.server.stop()

    def on_restart(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call `listener` after the supervised server restarted (it has no adapters then). A
        server run by the operator is watched by listing its adapters instead."""
        if self.server is not None:
            self.server.on_restart(listener)
