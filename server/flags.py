"""Boolean settings and query flags, spelled the ways people write them; shared by config, routes and store URLs."""

from __future__ import annotations

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(TRUE + FALSE[:-1])}, got {text!r}")
