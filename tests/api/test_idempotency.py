import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections

from flows import intake
from fulfillment.core import clock
from fulfillment.core.roles import CUSTOMER_SERVICE
from orders.models import Order, OrderTransition, Status
from portal.api import idempotency
from portal.api.models import IdempotencyRecord
from tests import factories
from tests.api.conftest import Caller, MasterData, assert_problem, erp_order, session_caller, token_caller

ORDERS = "/api/v1/orders/"
AT = datetime(2030, 6, 1, 8, tzinfo=UTC)


@pytest.fixture
def cs() -> Caller:
    return token_caller(CUSTOMER_SERVICE)


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_answer(cs: Caller, master: MasterData) -> None:
    body = erp_order("ERP-1")
    first = cs.post(ORDERS, body, key="push-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    transitions = OrderTransition.objects.count()

    again = cs.post(ORDERS, dict(reversed(list(body.items()))), key="push-1")  # same JSON, keys reordered

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Location"] == first["Location"] and again["Content-Type"] == "application/json"
    assert again["X-Request-ID"] != first["X-Request-ID"]
    assert Order.objects.count() == 1 and OrderTransition.objects.count() == transitions


@pytest.mark.django_db
def test_the_same_key_with_another_body_answers_422(cs: Caller, master: MasterData) -> None:
    cs.post(ORDERS, erp_order("ERP-1"), key="push-1")
    problem = assert_problem(cs.post(ORDERS, erp_order("ERP-2"), key="push-1"), 422, "idempotency_key_reused")
    assert problem["detail"] == "This Idempotency-Key was used for a different request; use a new key."
    assert list(Order.objects.values_list("external_id", flat=True)) == ["ERP-1"]


@pytest.mark.django_db
def test_the_same_key_on_another_endpoint_is_another_request(cs: Caller, master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    cs.post(f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": "x"}, key="k")
    assert_problem(
        cs.post(f"/api/v1/orders/{order.pk}/actions/cancel/", {"reason": "x"}, key="k"),
        422,
        "idempotency_key_reused",
    )
    order.refresh_from_db()
    assert order.status == Status.ON_HOLD


@pytest.mark.django_db
def test_keys_belong_to_their_token_or_user(master: MasterData) -> None:
    one = token_caller(CUSTOMER_SERVICE)
    two = token_caller(CUSTOMER_SERVICE, user=one.user)  # the same user's second token
    web = session_caller(CUSTOMER_SERVICE)
    assert one.post(ORDERS, erp_order("ERP-1"), key="k").status_code == 201
    assert two.post(ORDERS, erp_order("ERP-2"), key="k").status_code == 201
    assert web.post(ORDERS, erp_order("ERP-3"), key="k").status_code == 201
    assert sorted(IdempotencyRecord.objects.values_list("owner", flat=True)) == sorted(
        [f"token:{one.token.pk}", f"token:{two.token.pk}", f"user:{web.user.pk}"]
    )


@pytest.mark.django_db
def test_validation_errors_are_kept_and_replayed(cs: Caller, master: MasterData) -> None:
    bad = erp_order("ERP-1", customer="NOPE")
    first = cs.post(ORDERS, bad, key="k")
    assert first.status_code == 422
    factories.customer(code="NOPE")  # the same request would now pass, but the key has its answer
    again = cs.post(ORDERS, bad, key="k")
    assert (
        again.status_code == 422 and again.content == first.content and again["Idempotent-Replayed"] == "true"
    )
    assert again["Content-Type"] == "application/problem+json"
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_conflict_is_not_kept_so_the_retry_runs(cs: Caller, master: MasterData) -> None:
    order = factories.order_in(Status.ALLOCATED)
    path = f"/api/v1/orders/{order.pk}/actions/release_hold/"
    assert_problem(cs.post(path, {"reason": "x"}, key="k"), 409, "transition_not_allowed")
    assert not IdempotencyRecord.objects.exists()
    cs.post(f"/api/v1/orders/{order.pk}/actions/hold/", {"reason": "x"})
    retried = cs.post(path, {"reason": "x"}, key="k")
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried
    assert retried.json()["status"] == "allocated"


@pytest.mark.django_db
def test_a_server_error_frees_the_key(
    cs: Caller, master: MasterData, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(intake, "erp_order_upsert", broken)
    cs.client.raise_request_exception = False
    assert_problem(cs.post(ORDERS, erp_order("ERP-1"), key="k"), 500, "server_error")
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    assert cs.post(ORDERS, erp_order("ERP-1"), key="k").status_code == 201


@pytest.mark.django_db
def test_a_running_request_with_the_key_answers_409(cs: Caller, master: MasterData) -> None:
    body = erp_order("ERP-1")
    with clock.frozen(AT):
        cs.post(ORDERS, body, key="k")
        record = IdempotencyRecord.objects.get()
        IdempotencyRecord.objects.filter(pk=record.pk).update(state="in_progress", body=b"", status_code=None)
        clock.advance(idempotency.ABANDONED_AFTER - timedelta(seconds=1))
        running = cs.post(ORDERS, body, key="k")
        assert_problem(running, 409, "idempotency_in_progress")
        assert running["Retry-After"] == "1"
        clock.advance(timedelta(seconds=2))  # its worker must have died: the key is taken over
        taken_over = cs.post(ORDERS, body, key="k")
    assert taken_over.status_code == 200 and "Idempotent-Replayed" not in taken_over  # the known order
    assert IdempotencyRecord.objects.get().state == "done"


@pytest.mark.django_db
def test_answers_are_kept_24_hours_then_pruned(cs: Caller, master: MasterData) -> None:
    with clock.frozen(AT):
        first = cs.post(ORDERS, erp_order("ERP-1"), key="old")
        clock.advance(timedelta(hours=23, minutes=59))
        assert cs.post(ORDERS, erp_order("ERP-1"), key="old")["Idempotent-Replayed"] == "true"
        clock.advance(timedelta(minutes=2))
        # A day later the key means nothing: the request runs (and finds the known order).
        later = cs.post(ORDERS, erp_order("ERP-1"), key="old")
        assert later.status_code == 200 and first.status_code == 201
        clock.advance(timedelta(hours=25))
        cs.post(ORDERS, erp_order("ERP-2"), key="new")  # any new key prunes expired ones
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 201, "tab\tinside", "naïve"])
def test_bad_keys_answer_400(cs: Caller, master: MasterData, key: str) -> None:
    response = cs.client.post(
        ORDERS, erp_order("ERP-1"), content_type="application/json",
        headers=cs._headers({"Idempotency-Key": key}),
    )  # fmt: skip
    assert_problem(response, 400, "invalid_idempotency_key")
    assert not Order.objects.exists() and not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_refused_requests_use_no_key(master: MasterData) -> None:
    reader = token_caller(CUSTOMER_SERVICE, scopes=("read",))
    assert_problem(reader.post(ORDERS, erp_order(), key="k"), 403, "insufficient_scope")
    assert_problem(reader.post(ORDERS, raw=b"{", key="k"), 403, "insufficient_scope")
    writer = token_caller(CUSTOMER_SERVICE)
    assert_problem(writer.post(ORDERS, raw=b"{", key="k"), 400, "parse_error")
    assert not IdempotencyRecord.objects.exists()


# --- races (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_requests_with_one_key_run_once(master: MasterData) -> None:
    cs = token_caller(CUSTOMER_SERVICE)
    body, n = erp_order("ERP-RACE"), 6
    barrier = threading.Barrier(n, timeout=30)
    results: list[Any] = [None] * n

    def push(i: int) -> None:
        try:
            barrier.wait()
            results[i] = cs.post(ORDERS, body, key="race")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=push, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    ran = [r for r in results if r.status_code == 201 and "Idempotent-Replayed" not in r]
    others = [r for r in results if r not in ran]
    assert len(ran) == 1
    for r in others:
        assert (r.status_code, r.get("Idempotent-Replayed")) in ((409, None), (201, "true")), r.content
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_in_progress"
        else:
            assert r.content == ran[0].content
    assert Order.objects.filter(external_id="ERP-RACE").count() == 1
    assert OrderTransition.objects.filter(transition="receive").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_repeat_while_the_first_runs_gets_409_then_the_replay(
    master: MasterData, monkeypatch: pytest.MonkeyPatch
) -> None:
    cs = token_caller(CUSTOMER_SERVICE)
    body = erp_order("ERP-SLOW")
    started, may_finish = threading.Event(), threading.Event()
    real_upsert = intake.erp_order_upsert

    def slow_upsert(**kwargs: Any) -> Any:
        started.set()
        assert may_finish.wait(timeout=30)
        return real_upsert(**kwargs)

    monkeypatch.setattr(intake, "erp_order_upsert", slow_upsert)
    first: list[Any] = []

    def push() -> None:
        try:
            first.append(cs.post(ORDERS, body, key="slow"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=push)
    thread.start()
    assert started.wait(timeout=30)
    assert_problem(cs.post(ORDERS, body, key="slow"), 409, "idempotency_in_progress")
    may_finish.set()
    thread.join(timeout=60)

    assert first[0].status_code == 201, first[0].content
    replay = cs.post(ORDERS, body, key="slow")
    assert replay["Idempotent-Replayed"] == "true" and replay.content == first[0].content
    assert Order.objects.filter(external_id="ERP-SLOW").count() == 1
