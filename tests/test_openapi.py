"""The combined OpenAPI document the gateway publishes: valid OpenAPI 3.1, every service's
routes exactly once, every component kept under a service-unique name, errors documented."""

import httpx
import pytest
from openapi_spec_validator import validate

from shared.openapi import ComponentCollision, merge_documents
from shared.registry import ROUTED

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def operations(document: dict) -> list[tuple[str, str]]:
    return [
        (method, path) for path, item in document["paths"].items() for method in item if method in METHODS
    ]


async def test_combined_document_is_valid_complete_and_documents_errors(gateway, stack):
    merged = (await gateway.get("/openapi.json")).json()
    validate(merged)  # raises on anything that is not valid OpenAPI 3.1

    urls = {
        "auth": stack.auth,
        "documents": stack.documents,
        "mail": stack.mail,
        "assistant": stack.assistant,
    }
    assert set(urls) == {service.name for service in ROUTED}
    own = {name: httpx.get(f"{url}/openapi.json", timeout=10).json() for name, url in urls.items()}
    expected = [op for document in own.values() for op in operations(document)]
    assert sorted(operations(merged)) == sorted(expected)  # each route exactly once
    assert len(set(expected)) == len(expected)

    schemas = merged["components"]["schemas"]
    for name, document in own.items():
        for component in document["components"]["schemas"]:
            assert f"{name}.{component}" in schemas, (name, component)
    # documents and mail both define search results; neither is lost.
    assert "documents.PassageList" in schemas and "mail.PassageList" in schemas

    for method, path in operations(merged):
        responses = merged["paths"][path][method]["responses"]
        assert responses["default"]["content"]["application/json"]["schema"]["$ref"].endswith(".Error")
        if "422" in responses:
            assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(".Error")
    assert not any(name.endswith("HTTPValidationError") for name in schemas)


async def test_no_gateway_route_is_left_without_a_service(gateway):
    # /queries belongs to the assistant service: without a token the gateway refuses it (401);
    # a prefix no service claims is simply not found.
    assert (await gateway.get("/queries")).status_code == 401
    response = await gateway.get("/answers")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_merge_refuses_a_path_served_twice_and_renames_references():
    first = {
        "paths": {"/a": {"get": {"responses": {"200": {"$ref": "#/components/schemas/Out"}}}}},
        "components": {"schemas": {"Out": {"type": "object"}}},
    }
    merged = merge_documents({"one": first, "two": {"paths": {"/b": {}}}}, title="t", version="1")
    assert merged["paths"]["/a"]["get"]["responses"]["200"]["$ref"] == "#/components/schemas/one.Out"
    with pytest.raises(ComponentCollision):
        merge_documents({"one": first, "two": first}, title="t", version="1")
