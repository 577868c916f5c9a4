"""Real documentation sets for the retrieval and refusal benchmarks: Debian `*-doc` packages (HTML
built by different site generators) and, per set, questions written in users' words with the pages
that answer them, plus off-topic questions far from and near the product's field.

The packages are fetched once with `apt-get download` into the cache folder and unpacked there with
`dpkg-deb -x`; the question files live in `bench/retrieval_sets/`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

SETS_DIR = Path(__file__).resolve().parent / "retrieval_sets"
DEFAULT_CACHE = Path.home() / ".cache" / "shadowdesk-bench"
#: Thresholds and weights are chosen on these sets only; the others are held out.
TUNING_SETS = ("borgbackup", "djangorestframework")


@dataclass(frozen=True)
class Question:
    text: str
    pages: tuple[str, ...]


@dataclass(frozen=True)
class DocSet:
    name: str
    package: str
    version: str
    generator: str
    root: Path
    bot_name: str
    scope: str
    in_scope: tuple[Question, ...]
    near: tuple[str, ...]
    far: tuple[str, ...]
    greetings: tuple[str, ...]

    @property
    def held_out(self) -> bool:
        return self.name not in TUNING_SETS


def available_sets() -> list[str]:
    return sorted(p.stem for p in SETS_DIR.glob("*.json"))


def load_set(name: str, cache: Path = DEFAULT_CACHE) -> DocSet:
    """The set's questions, with its package fetched and unpacked under `cache` if needed."""
    spec = json.loads((SETS_DIR / f"{name}.json").read_text())
    unpacked = _fetch(spec["package"], spec["version"], cache)
    root = unpacked / spec["root"]
    if not root.is_dir():
        raise SystemExit(f"{name}: {root} is missing from the unpacked package")
    return DocSet(
        name=spec["name"],
        package=spec["package"],
        version=spec["version"],
        generator=spec["generator"],
        root=root,
        bot_name=spec["bot"]["name"],
        scope=spec["bot"]["scope"],
        in_scope=tuple(Question(q["q"], tuple(q["pages"])) for q in spec["in_scope"]),
        near=tuple(spec["near"]),
        far=tuple(spec["far"]),
        greetings=tuple(spec.get("greetings", ())),
    )


def _fetch(package: str, version: str, cache: Path) -> Path:
    target = cache / "packages" / f"{package}_{version}"
    if (target / ".unpacked").exists():
        return target
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = list(debs.glob(f"{package}_*.deb"))
    if not found:
        for wanted in (f"{package}={version}", package):
            done = subprocess.run(
                ["apt-get", "download", wanted], cwd=debs, capture_output=True, text=True
            )
            if done.returncode == 0:
                if wanted == package:
                    print(
                        f"note: {package} {version} is gone from the archive; using its current version"
                    )
                break
        else:
            raise SystemExit(
                f"cannot download {package}: {done.stderr.strip()} "
                "(needs apt-get with Debian's package lists: apt-get update)"
            )
        found = list(debs.glob(f"{package}_*.deb"))
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(target)], check=True)
    (target / ".unpacked").touch()
    return target
