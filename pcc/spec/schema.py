"""The JSON Schema of the spec language, generated from the pydantic models (by alias, so keys read as in YAML).

Editors use it for completion and checking (``# yaml-language-server: $schema=pcc-spec.schema.json``).
The committed copy ``specs/pcc-spec.schema.json`` is regenerated with ``pcc schema > specs/pcc-spec.schema.json``
and a test keeps it in sync with the models."""

from __future__ import annotations

from typing import Any

from pcc.spec.models import Spec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:pcc:spec:v1"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a version-1 pcc spec."""
    body = Spec.model_json_schema(by_alias=True)
    body.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, "title": "pcc spec (version 1)", **body}


def json_schema_text() -> str:
    """:func:`json_schema` as the committed file holds it (2-space indent, UTF-8, final newline)."""
    import json

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
