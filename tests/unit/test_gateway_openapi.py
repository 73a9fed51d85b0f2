"""The OpenAPI description says what every JSON route of the gateway answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planexe_ax.config import Settings
from planexe_ax.ws_gateway.app import create_app

NO_JSON_BODY = {("get", "/metrics")}
"""Routes that answer something else than JSON: Prometheus text."""


@pytest.fixture
def openapi(tmp_path: Path) -> dict[str, Any]:
    app = create_app(Settings(data_dir=tmp_path), "nats://127.0.0.1:1")  # never connects: no lifespan runs
    schema: dict[str, Any] = app.openapi()
    return schema


def success_schemas(operation: dict[str, Any]) -> dict[str, Any]:
    """Status -> JSON schema of each 2xx answer that has a body."""
    found = {}
    for status, response in operation["responses"].items():
        if status.startswith("2") and status != "204":
            found[status] = response.get("content", {}).get("application/json", {}).get("schema")
    return found


def is_described(schema: dict[str, Any] | None, components: dict[str, Any]) -> bool:
    """True when ``schema`` names a model, or is an object or list with described fields or items."""
    if not schema:
        return False
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[-1]]
        return bool(target.get("properties"))
    if "anyOf" in schema:
        return all(is_described(part, components) for part in schema["anyOf"] if part.get("type") != "null")
    if schema.get("type") == "array":
        return is_described(schema.get("items"), components)
    return bool(schema.get("properties"))


def test_every_json_route_describes_its_answer(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    undescribed = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if (method, path) in NO_JSON_BODY:
                continue
            schemas = success_schemas(operation)
            if not schemas and "204" not in operation["responses"]:
                undescribed.append(f"{method.upper()} {path}: no 2xx answer")
            undescribed += [
                f"{method.upper()} {path} {status}: {schema}"
                for status, schema in schemas.items()
                if not is_described(schema, components)
            ]
    assert undescribed == []
    assert len(openapi["paths"]) > 15


def test_an_answer_of_any_shape_is_not_described() -> None:
    components = {"Page": {"properties": {"items": {}}}, "Empty": {"type": "object"}}
    assert not is_described({}, components)
    assert not is_described({"type": "object", "additionalProperties": True}, components)
    assert not is_described({"$ref": "#/components/schemas/Empty"}, components)
    assert is_described({"$ref": "#/components/schemas/Page"}, components)
    assert is_described({"type": "array", "items": {"$ref": "#/components/schemas/Page"}}, components)
