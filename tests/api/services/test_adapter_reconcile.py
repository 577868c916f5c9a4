"""backend=vllm at a URL: the gateway keeps what the server holds in step with the releases. The
upstream is the stub server (it speaks vLLM's adapter routes), so a "restart" is clearing its
adapter set; the same path against a real vLLM that is killed and restarted is covered in
tests/api/routes/test_vllm_gateway.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from serving.vllm_backend import VLLMBackend
from tests.support.servers import serve_app, wait_for
from tests.support.stub_upstream import StubUpstream
from tests.support.stub_upstream import create_app as create_stub

ADMIN = "reconcile-admin-key-0123456789"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[StubUpstream, str]]:
    stub = create_stub()
    with serve_app(stub) as upstream:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            backend="vllm",
            vllm_url=upstream + "/v1",
            model="stub-model",
            admin_key=ADMIN,
            create_demo_bot=False,
            adapter_reconcile_s=0.1,
        )  # type: ignore[call-arg]
        app = create_app(settings)
        assert isinstance(app.state.backend, VLLMBackend)
        with serve_app(app, lifespan="on") as url:
            yield stub, url


def admin(url: str, path: str, **kw: object) -> httpx.Response:
    r = httpx.post(url + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30, **kw)  # type: ignore[arg-type]
    assert r.status_code < 300, r.text
    return r


def release(url: str, adapter: str) -> str:
    body = {"adapter": adapter, "adapter_path": f"/adapters/{adapter}", "mode": "adapter"}
    return str(admin(url, "/api/bots/acme/releases", json=body).json()["id"])


def test_adapters_come_back_after_a_restart_and_retired_ones_go(
    stack: tuple[StubUpstream, str],
) -> None:
    stub, url = stack
    admin(url, "/api/bots", json={"slug": "acme", "name": "Acme"})
    v2 = release(url, "acme-v2")
    admin(url, f"/api/bots/acme/releases/{v2}/promote", json={"force": True})
    assert stub.adapters == {"acme-v2": "/adapters/acme-v2"}

    stub.adapters.clear()  # vLLM restarted: it holds no adapter
    wait_for(lambda: "acme-v2" in stub.adapters, 10, "the live adapter to be loaded again")

    v3 = release(url, "acme-v3")
    admin(url, f"/api/bots/acme/releases/{v3}/promote", json={"force": True})
    assert set(stub.adapters) == {"acme-v3"}  # the promotion unloaded the retired acme-v2
    # A replica that missed the promotion loaded acme-v2 again; the operator loaded one of their own.
    stub.adapters["acme-v2"] = "/adapters/acme-v2"
    stub.adapters["operator-own"] = "/elsewhere"
    wait_for(lambda: "acme-v2" not in stub.adapters, 10, "the retired adapter to be unloaded")
    assert set(stub.adapters) == {"acme-v3", "operator-own"}  # not ours: left alone
    v4 = release(url, "acme-v4")  # the next promotion unloads what it retires, and only that
    admin(url, f"/api/bots/acme/releases/{v4}/promote", json={"force": True})
    assert set(stub.adapters) == {"acme-v4", "operator-own"}
