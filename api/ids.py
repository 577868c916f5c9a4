"""Identifiers with a kind prefix (`bot_…`, `exch_…`), sortable by creation time."""

import os
import time


def new_id(prefix: str) -> str:
    """`prefix_` + 48-bit millisecond timestamp + 80 random bits, in lowercase base32-ish hex."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"
