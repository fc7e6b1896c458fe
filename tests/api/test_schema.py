import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from fulfillment.core.roles import CUSTOMER_SERVICE
from tests.api.conftest import Caller, assert_problem, session_caller, token_caller

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> dict[str, Any]:
    """The schema as ``manage.py spectacular --validate --fail-on-warn`` writes it: any
    warning or validation error fails the command (and so the test)."""
    path = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(Path(path).read_text())


def api_routes() -> set[str]:
    """Every /api/v1/ path in the URL conf, in OpenAPI form ({id} for the order's pk)."""

    def walk(patterns: list[Any], prefix: str) -> list[str]:
        found = []
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                found += walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                found.append(route)
        return found

    def variable(match: re.Match[str]) -> str:
        return "{id}" if match[1] == "pk" else f"{{{match[1]}}}"

    routes = set()
    for route in walk(get_resolver().url_patterns, "/"):
        clean = re.sub(r"\(\?P<(\w+)>[^)]*\)", variable, route.replace("^", "").replace("$", ""))
        if clean.startswith("/api/v1/"):
            routes.add(clean)
    return routes - {"/api/v1/schema/", "/api/v1/docs/"}


def test_every_route_is_in_the_schema(schema: dict[str, Any]) -> None:
    assert set(schema["paths"]) == api_routes()
    assert (
        "/api/v1/webhooks/wms/" in schema["paths"]
        and "/api/v1/orders/{id}/actions/{transition}/" in schema["paths"]
    )


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_every_operation_documents_its_errors_as_problems(schema: dict[str, Any]) -> None:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, method, op in operations(schema):
        webhook = path.startswith("/api/v1/webhooks/")
        expected = {"400", "401", "413", "422"} if webhook else {"401", "403", "429"}
        if "{" in path:
            expected.add("404")
        if method in ("post", "patch") and not webhook:
            expected |= {"400", "409", "415", "422"}
        if op["operationId"].endswith("_list"):
            expected.add("422")  # a bad filter, cursor or page size
        errors = {code for code in op["responses"] if code >= "400"}
        assert errors == expected, (path, method)
        for code in errors:
            assert op["responses"][code]["content"] == problem, (path, method, code)
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        if method == "post" and not webhook:
            assert "Idempotency-Key" in headers, path
        if not webhook:
            assert op["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
            assert {"tokenAuth": []} in op["security"] and {"cookieAuth": []} in op["security"]


def test_the_problem_component_and_the_security_schemes(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "code", "errors"}
    assert problem["required"] == ["code", "detail", "status", "title", "type"]
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <key>`; a key comes from `manage.py issue_token <user> --scope …`.",
    }
    assert schema["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"


def test_the_webhooks_with_their_signature_and_answers(schema: dict[str, Any]) -> None:
    for partner, types in [
        (
            "wms",
            {
                "inventory.adjusted",
                "pick.completed",
                "shipment.confirmed",
                "delivery.confirmed",
                "return.initiated",
            },
        ),
        ("carrier", {"tracking.updated"}),
    ]:
        op = schema["paths"][f"/api/v1/webhooks/{partner}/"]["post"]
        assert set(op["responses"]) == {"202", "400", "401", "413", "422"}
        assert "security" not in op
        signature = next(p for p in op["parameters"] if p["name"] == "X-Signature")
        assert signature["in"] == "header" and signature["required"] is True
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        body = schema["components"]["schemas"][ref]
        assert set(body["discriminator"]["mapping"]) == types


def test_the_erp_push_contract(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/v1/orders/"]["post"]
    assert set(op["responses"]) >= {"200", "201"}
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    body = schema["components"]["schemas"][ref]
    assert set(body["properties"]) == {
        "external_id", "customer", "warehouse", "promised_date", "currency", "ship_to", "lines",
    }  # fmt: skip
    assert set(body["required"]) == {"external_id", "customer", "promised_date", "ship_to", "lines"}
    assert op["responses"]["201"]["headers"]["Location"]["schema"] == {"type": "string", "format": "uri"}


def test_a_token_holder_fetches_the_schema(anonymous: Caller) -> None:
    reader = token_caller(CUSTOMER_SERVICE, scopes=("read",))
    response = reader.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    assert json.loads(response.content)["info"]["title"] == "Fulfillment Ops Portal API"
    assert token_caller(scopes=("read",)).get("/api/v1/schema/").status_code == 200  # no role needed
    assert_problem(anonymous.get("/api/v1/schema/"), 401, "not_authenticated")
    assert_problem(
        token_caller(CUSTOMER_SERVICE, scopes=("write",)).get("/api/v1/schema/"), 403, "insufficient_scope"
    )


def test_the_docs_are_for_logged_in_people_and_need_no_cdn() -> None:
    response = Client().get("/api/v1/docs/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/api/v1/docs/"
    page = session_caller(CUSTOMER_SERVICE).get("/api/v1/docs/")
    html = page.content.decode()
    assert page.status_code == 200 and "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html and "/api/v1/schema/" in html
