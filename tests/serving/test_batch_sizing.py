"""The batch cap is sized from the model and the machine, so requests past a fixed cap of 8 do not
wait for a whole answer before their first token."""

import asyncio
from types import SimpleNamespace

from serving.backend import GenerationParams
from serving.batch_sizing import CEILING, FLOOR, auto_batch_size, kv_bytes_per_token
from serving.transformers_backend import TransformersBackend

# SmolLM2-135M's shape: 30 layers, 3 KV heads of 64.
SMOLLM2 = SimpleNamespace(
    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576
)
GIB = 2**30


def test_the_cap_follows_memory_and_cores_within_bounds() -> None:
    assert kv_bytes_per_token(SMOLLM2, 4) == 2 * 30 * 3 * 64 * 4
    assert auto_batch_size(SMOLLM2, dtype_bytes=4, memory=24 * GIB, cores=2) == 32  # by cores
    assert auto_batch_size(SMOLLM2, dtype_bytes=4, memory=24 * GIB, cores=16) == CEILING
    # ~94 MB of KV cache per row at 2048 tokens: a quarter of 4 GiB free holds 11 rows.
    assert auto_batch_size(SMOLLM2, dtype_bytes=4, memory=4 * GIB, cores=16) == 11
    assert auto_batch_size(SMOLLM2, dtype_bytes=4, memory=GIB // 2, cores=1) == FLOOR


def test_an_automatic_cap_batches_sixteen_concurrent_requests_together(
    smollm2_backend: TransformersBackend,
) -> None:
    async def scenario() -> tuple[int, int]:
        backend = TransformersBackend.from_loaded(
            smollm2_backend.model,
            smollm2_backend.tokenizer,
            model_name=smollm2_backend.model_name,
            torch_threads=1,
        )
        await backend.start()
        try:
            params = GenerationParams(max_tokens=4, temperature=0)
            question = [{"role": "user", "content": "Say hello."}]
            await asyncio.gather(*(backend.complete(question, params) for _ in range(16)))  # type: ignore[arg-type]
            assert backend.max_batch_size is not None
            return backend.max_batch_size, backend.stats.max_batch_seen
        finally:
            await backend.close()

    cap, seen = asyncio.run(scenario())
    assert cap == auto_batch_size(smollm2_backend.model.config, dtype_bytes=4)
    assert seen == min(16, cap)  # on any machine with room for 16 rows: all 16 at once
