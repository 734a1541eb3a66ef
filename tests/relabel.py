"""What Prometheus does with an HTTP SD answer before it scrapes: the target labels after ``relabel_configs``.

No relabelling tool is on PyPI, so this follows Prometheus's semantics for the actions docs/prometheus.md uses
and a few more: ``replace`` (the default), ``keep``, ``drop``, ``keepequal``, ``dropequal`` (Prometheus 2.41+),
``labelmap``, ``labeldrop``, ``labelkeep``.
Regexes are anchored at both ends; ``$1``, ``${1}`` and ``$name`` in replacements refer to groups; values of
several source labels are joined with ``separator`` (``;``); a missing label is the empty string. Afterwards
labels starting with ``__`` are dropped, ``instance`` defaults to ``__address__`` and ``job`` to the job name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_REFERENCE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def _expand(template: str, match: re.Match[str]) -> str:
    def group(ref: re.Match[str]) -> str:
        if ref.group(0) == "$$":
            return "$"
        name = ref.group(1) or ref.group(2)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except (IndexError, re.error):
            return ""
        return value or ""

    return _REFERENCE.sub(group, template)


def relabel(labels: Mapping[str, str], rules: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    """The labels after ``rules``, or None when a rule drops the target."""
    current = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        value = rule.get("separator", ";").join(current.get(name, "") for name in rule.get("source_labels", []))
        replacement = rule.get("replacement", "$1")
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        # The *equal actions compare the joined source labels with the target label's value, no regex.
        if action == "keepequal" and value != current.get(rule["target_label"], ""):
            return None
        if action == "dropequal" and value == current.get(rule["target_label"], ""):
            return None
        if action == "replace":
            match = regex.match(value)
            if match:
                target = _expand(rule["target_label"], match)
                result = _expand(replacement, match)
                if LABEL_NAME.fullmatch(target):
                    if result:
                        current[target] = result
                    else:
                        current.pop(target, None)
        elif action == "labelmap":
            for name, label_value in list(current.items()):
                match = regex.match(name)
                if match:
                    current[_expand(replacement, match)] = label_value
        elif action == "labeldrop":
            current = {n: v for n, v in current.items() if not regex.match(n)}
        elif action == "labelkeep":
            current = {n: v for n, v in current.items() if regex.match(n)}
        elif action not in ("keep", "drop", "keepequal", "dropequal"):
            raise ValueError(f"relabel action {action!r} is not implemented here")
    return current


def scraped_targets(answer: list[dict], scrape_config: Mapping[str, Any]) -> list[dict[str, str]]:
    """The labels of every target Prometheus would scrape from an HTTP SD ``answer`` under ``scrape_config``."""
    found = []
    for group in answer:
        for address in group["targets"]:
            labels = {
                "job": scrape_config["job_name"],
                "__metrics_path__": scrape_config.get("metrics_path", "/metrics"),
                "__scheme__": scrape_config.get("scheme", "http"),
                **group.get("labels", {}),
                "__address__": address,
            }
            kept = relabel(labels, scrape_config.get("relabel_configs", []))
            if kept is None:
                continue
            kept.setdefault("instance", kept["__address__"])
            found.append({n: v for n, v in kept.items() if not n.startswith("__")})
    return found
