"""LoRA adapters served side by side on one in-process base model (peft), each row of a batch with
its own adapter or none.

The base model is wrapped in a `PeftModel` when the first adapter arrives and unwrapped when the last
one leaves, so a backend without adapters runs the plain model at full speed. A forward passes peft's
per-row `adapter_names` (the base model's rows as "__base__"), so one batch mixes bots. Every method
here mutates the model: the batch engine calls them from its own thread, between forwards.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from serving.backend import BackendError

#: peft's name for "no adapter" in a mixed batch.
BASE = "__base__"


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft calls transformers 5's checkpointing methods by their old names (a FutureWarning) and
    warns when the active adapter is deleted; neither matters here (rows name their adapter)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*deprecated.*v6", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Adapter .* was active", category=UserWarning)
        yield


class LoraSet:
    """The adapters loaded on one base model, by name; names are immutable (one name, one folder)."""

    def __init__(self, model: Any) -> None:
        self._base = model
        self._peft: Any = None
        self._paths: dict[str, str] = {}

    @property
    def names(self) -> dict[str, str]:
        """Loaded adapter names and the folders they came from."""
        return dict(self._paths)

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def load(self, name: str, path: str) -> None:
        """Load the adapter at `path` under `name`; loading the same name and folder again is a
        no-op, another folder under a loaded name is refused."""
        if name == BASE:
            raise BackendError(f"'{BASE}' is reserved for the base model")
        known = self._paths.get(name)
        if known is not None:
            if Path(known).resolve() != Path(path).resolve():
                raise BackendError(
                    f"adapter '{name}' is already loaded from {known}; adapter names are immutable"
                )
            return
        folder = Path(path)
        config_file = folder / "adapter_config.json"
        if not config_file.is_file():
            raise BackendError(f"{path} is not a peft adapter folder (no adapter_config.json)")
        try:
            kind = json.loads(config_file.read_text()).get("peft_type")
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read {config_file}: {exc}") from exc
        if kind != "LORA":
            raise BackendError(f"adapter '{name}' is {kind}; only LoRA adapters can be served")
        try:
            with _quiet_peft():
                if self._peft is None:
                    from peft import PeftModel

                    self._peft = PeftModel.from_pretrained(self._base, str(folder), name)
                else:
                    self._peft.load_adapter(str(folder), adapter_name=name)
        except Exception as exc:  # peft's own errors: shapes of another base model, bad files...
            if self._peft is not None and name in getattr(self._peft, "peft_config", {}):
                self._drop(name)
            raise BackendError(f"cannot load adapter '{name}' from {path}: {exc}") from exc
        self._peft.eval()
        self._paths[name] = str(folder)

    def unload(self, name: str) -> None:
        """Forget an adapter (a no-op for one not loaded); the last one out unwraps the model."""
        if name in self._paths:
            self._drop(name)
            del self._paths[name]

    def _drop(self, name: str) -> None:
        others = [n for n in self._peft.peft_config if n != name]
        with _quiet_peft():
            if not others:
                # Deleting peft's last adapter leaves a PeftModel that cannot run; unload restores
                # the original modules instead (no merge: the base weights are untouched).
                self._base = self._peft.unload()
                self._peft = None
                return
            if name in self._peft.active_adapters:
                self._peft.set_adapter(others[0])
            self._peft.delete_adapter(name)

    def forward(self, adapters: Sequence[str | None], **inputs: Any) -> Any:
        """One forward; row i uses `adapters[i]` (None: the base model)."""
        if self._peft is None or not any(adapters):
            if self._peft is not None:
                inputs["adapter_names"] = [BASE] * len(adapters)
                return self._peft(**inputs)
            return self._base(**inputs)
        missing = {a for a in adapters if a is not None and a not in self._paths}
        if missing:
            raise BackendError(f"adapter(s) not loaded: {', '.join(sorted(missing))}")
        return self._peft(adapter_names=[a or BASE for a in adapters], **inputs)
