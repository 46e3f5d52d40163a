"""OpenAPI documents that tell the truth about errors, and their merge into one document.

Every service answers errors with the envelope ``{"error": {"code", "message"}}``
(:mod:`shared.errors`), validation errors included, so each service's document declares that
shape for its 422 and for every other error (``default``), instead of FastAPI's
``HTTPValidationError``. The gateway merges the services' documents; component names are
prefixed with the service's name, so two services can both define ``SearchResponse`` and
neither is lost.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = "Error"
ERROR_REF = f"#/components/schemas/{ERROR_SCHEMA}"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

ERROR_COMPONENT: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every error answer: a machine-readable code and a message for people.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["not_found"]},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


def with_error_envelope(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the envelope on every operation's 422 and ``default`` response."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas[ERROR_SCHEMA] = ERROR_COMPONENT
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error_response("Invalid input")
            responses["default"] = _error_response("Any error")
    return document


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) declare the error envelope."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = with_error_envelope(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class ComponentCollision(ValueError):
    """Two services' components would land under the same name in the merged document."""


def _rename_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                renames.get(value, value)
                if key == "$ref" and isinstance(value, str)
                else _rename_refs(value, renames)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def component_name(service: str, name: str) -> str:
    return f"{service}.{name}"


def merge_documents(documents: Mapping[str, dict[str, Any]], *, title: str, version: str) -> dict[str, Any]:
    """One OpenAPI 3.1 document from each service's: paths as they are (a path served by two
    services is an error), components prefixed ``<service>.`` with every ``$ref`` rewritten."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
    schemas = merged["components"]["schemas"]
    for service, document in documents.items():
        own = document.get("components", {}).get("schemas", {})
        renames = {
            f"#/components/schemas/{name}": f"#/components/schemas/{component_name(service, name)}"
            for name in own
        }
        for name, schema in own.items():
            new_name = component_name(service, name)
            if new_name in schemas:
                raise ComponentCollision(f"component {new_name} is defined twice")
            schemas[new_name] = _rename_refs(schema, renames)
        for path, item in document.get("paths", {}).items():
            if path in merged["paths"]:
                raise ComponentCollision(f"path {path} is served by two services")
            merged["paths"][path] = _rename_refs(item, renames)
    return merged
