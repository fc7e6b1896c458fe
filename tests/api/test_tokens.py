import hashlib
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from fulfillment.core import clock
from fulfillment.core.roles import CUSTOMER_SERVICE
from portal.api.models import ApiToken
from tests import factories
from tests.api.conftest import Caller, assert_problem

pytestmark = pytest.mark.django_db


def issue(*args: str) -> list[str]:
    out = StringIO()
    call_command("issue_token", *args, stdout=out)
    return out.getvalue().splitlines()


def test_issue_token_prints_the_key_last_and_stores_only_its_hash() -> None:
    user = factories.user("erp", CUSTOMER_SERVICE)
    lines = issue("erp", "--scope", "write", "--scope", "read", "--name", "ERP push")
    key = lines[-1]
    token = ApiToken.objects.get()
    assert len(key) == 43 and token.prefix == key[:8]
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.user == user and token.name == "ERP push" and token.scopes == ["read", "write"]
    stored = [str(getattr(token, f.attname)) for f in ApiToken._meta.concrete_fields]
    assert not any(key in value for value in stored)
    assert token.revoked_at is None and token.last_used_at is None


def test_without_a_scope_the_token_may_only_read() -> None:
    factories.user("reader", CUSTOMER_SERVICE)
    issue("reader")
    assert ApiToken.objects.get().scopes == ["read"]


def test_each_call_makes_a_new_key() -> None:
    factories.user("twice")
    assert issue("twice")[-1] != issue("twice")[-1]
    assert ApiToken.objects.count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "No user 'nobody'."),
        (["ghost"], "User 'ghost' is inactive."),
        (["someone", "--scope", "root"], "invalid choice: 'root'"),
    ],
)
def test_bad_calls_make_no_token(args: list[str], message: str) -> None:
    factories.user("someone")
    ghost = factories.user("ghost")
    ghost.is_active = False
    ghost.save()
    with pytest.raises(CommandError, match=message):
        issue(*args)
    assert not ApiToken.objects.exists()


def key_of(username: str, *scopes: str) -> str:
    return issue(username, *[arg for scope in scopes for arg in ("--scope", scope)])[-1]


def test_the_printed_key_authenticates_and_marks_the_token_used(master: object) -> None:
    factories.user("cs", CUSTOMER_SERVICE)
    caller = Caller(client=Client(), key=key_of("cs", "read"))
    response = caller.get("/api/v1/customers/")
    assert response.status_code == 200
    assert [c["code"] for c in response.json()["results"]] == ["C1"]
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [
        "Token",  # no key
        "Token one two",  # two keys
        "Token not-a-key-we-issued",
        "token not-a-key-we-issued",  # the keyword is case-insensitive, the key is still unknown
    ],
)
def test_bad_token_headers_answer_401(header: str, anonymous: Caller) -> None:
    response = anonymous.get("/api/v1/customers/", Authorization=header)
    assert_problem(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Token"


def test_a_revoked_token_or_an_inactive_user_is_refused() -> None:
    user = factories.user("cs", CUSTOMER_SERVICE)
    key = key_of("cs", "read")
    caller = Caller(client=Client(), key=key)
    assert caller.get("/api/v1/customers/").status_code == 200
    ApiToken.objects.update(revoked_at=clock.now())
    assert_problem(caller.get("/api/v1/customers/"), 401, "authentication_failed")
    ApiToken.objects.update(revoked_at=None)
    user.is_active = False
    user.save()
    assert_problem(caller.get("/api/v1/customers/"), 401, "authentication_failed")


def test_an_admin_revokes_tokens_in_the_django_admin() -> None:
    factories.user("erp", CUSTOMER_SERVICE)
    key = key_of("erp", "write")
    token = ApiToken.objects.get()
    admin_client = Client()
    admin_client.force_login(User.objects.create_superuser("root", password="pw"))
    listing = admin_client.get("/admin/api/apitoken/")
    assert listing.status_code == 200 and token.prefix in listing.content.decode()
    assert key not in listing.content.decode() and token.key_hash not in listing.content.decode()
    admin_client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert admin_client.get("/admin/api/apitoken/add/").status_code == 403
