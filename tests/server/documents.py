"""Validating bodies against the app's OpenAPI document as a client reading it would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jsonschema import FormatChecker, validators
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """``pattern`` as ECMA-262 (JSON Schema's dialect) reads a final ``$``: the very end of the string, where
    Python's ``re`` also matches before a final newline."""
    if isinstance(instance, str) and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(OAS31Validator, {"pattern": _ecma_pattern})


def validator(document: dict, schema_name: str) -> Any:
    """A validator of ``document``'s ``schema_name``, formats checked, patterns read as ECMA-262 reads them."""
    return EcmaValidator({**document, "$ref": f"#/components/schemas/{schema_name}"}, format_checker=FormatChecker())
