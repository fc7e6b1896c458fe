"""The work-queue mechanism: every action, who may do it, and what it leaves behind."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection

from fulfillment.core import clock, roles
from fulfillment.core.actors import Actor
from fulfillment.core.errors import ApplicationError, InvalidInput, NotFound, PermissionDenied
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from fulfillment.core.priority import priority_key
from fulfillment.core.workqueue import (
    BulkOutcome,
    Subject,
    bulk,
    queue_get,
    work_item_claim,
    work_item_claim_next,
    work_item_comment,
    work_item_open,
    work_item_reassign,
    work_item_release,
    work_item_resolve,
    work_item_snooze,
    work_item_update,
)
from tests import factories

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=BERLIN)  # a Monday, within working hours
SYSTEM = Actor.named("test")
CODES = ["stock_arrived", "alternate_warehouse", "backordered"]


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.frozen(T0):
        yield


@pytest.fixture
def planning() -> Queue:
    return queue_get(slug="planning")


@pytest.fixture
def alice() -> User:
    return factories.user("alice", roles.PLANNER)


@pytest.fixture
def bob() -> User:
    return factories.user("bob", roles.PLANNER)


@pytest.fixture
def carol() -> User:
    """In finance, not in the planning team."""
    return factories.user("carol", roles.FINANCE)


@pytest.fixture
def admin() -> User:
    return factories.user("root", roles.ADMIN)


def open_item(
    queue: Queue,
    *,
    revenue: str = "100.00",
    promised_in: timedelta | None = timedelta(days=2),
    title: str = "Short 4 units",
) -> WorkItem:
    return work_item_open(
        queue=queue,
        kind=WorkItem.Kind.EXCEPTION,
        type="inventory_shortfall",
        title=title,
        subject=Subject(
            ref="SO-0000001",
            customer_code="C00001",
            customer_tier="standard",
            warehouse_code="W1",
            revenue_at_risk=Decimal(revenue),
            promised_at=T0 + promised_in if promised_in is not None else None,
        ),
        actor=SYSTEM,
        sla_minutes=120,
    )


@contextmanager
def refused(error: type[ApplicationError], message: str) -> Iterator[None]:
    with pytest.raises(error) as caught:
        yield
    assert caught.value.message == message


def history(item: WorkItem) -> list[tuple[str, str]]:
    return [(e.action, e.actor_label) for e in WorkItemEvent.objects.filter(item_id=item.pk)]


def snapshot(item: WorkItem) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The stored row and its history: compare before and after a refused action."""
    return WorkItem.objects.filter(pk=item.pk).values().get(), history(item)


def claimed_by(item: WorkItem, user: User) -> WorkItem:
    return work_item_claim(item=item, user=user)


class TestOpen:
    def test_open_sets_rank_sla_and_history(self, planning: Queue) -> None:
        item = open_item(planning, revenue="2500.00", title="Short 4 units of SKU-1")
        item.refresh_from_db()

        assert (item.state, item.kind, item.type, item.title) == (
            "open",
            "exception",
            "inventory_shortfall",
            "Short 4 units of SKU-1",
        )
        assert (item.subject_ref, item.customer_code, item.customer_tier, item.warehouse_code) == (
            "SO-0000001",
            "C00001",
            "standard",
            "W1",
        )
        assert item.created_at == T0
        assert item.priority_key == priority_key(
            revenue_at_risk=Decimal("2500.00"),
            customer_tier="standard",
            severity=1,
            escalation_level=0,
            anchor=T0 + timedelta(days=2),
        )
        # The planner team's calendar: Mon-Fri 08-18 Berlin; 120 minutes from 10:00.
        assert item.sla_due_at == datetime(2026, 11, 23, 12, 0, tzinfo=BERLIN)
        assert item.next_sla_warning_at == datetime(2026, 11, 23, 11, 0, tzinfo=BERLIN)
        assert (item.assignee, item.claimed_at, item.snoozed_until) == (None, None, None)
        assert history(item) == [("opened", "test")]

    def test_an_item_without_a_promise_ranks_from_its_creation(self, planning: Queue) -> None:
        item = open_item(planning, promised_in=None)

        assert item.priority_key == priority_key(
            revenue_at_risk=Decimal("100.00"),
            customer_tier="standard",
            severity=1,
            escalation_level=0,
            anchor=T0,
        )

    def test_a_repeat_signal_updates_the_item_and_its_rank(self, planning: Queue) -> None:
        item = open_item(planning)
        promised = T0 + timedelta(days=1)

        work_item_update(
            item=item,
            actor=SYSTEM,
            note="Short 6 units now",
            subject=Subject(customer_tier="key", revenue_at_risk=Decimal("900.00"), promised_at=promised),
            severity=2,
        )
        item.refresh_from_db()

        assert (item.revenue_at_risk, item.customer_tier, item.severity, item.promised_at) == (
            Decimal("900.00"),
            "key",
            2,
            promised,
        )
        assert item.priority_key == priority_key(
            revenue_at_risk=Decimal("900.00"),
            customer_tier="key",
            severity=2,
            escalation_level=0,
            anchor=promised,
        )
        assert history(item) == [("opened", "test"), ("updated", "test")]
        assert WorkItem.objects.count() == 1

    def test_unknown_queue_is_not_found(self) -> None:
        with refused(NotFound, "There is no queue 'nowhere'."):
            queue_get(slug="nowhere")


class TestClaimNext:
    def test_highest_rank_first_then_older_then_lower_id(
        self, planning: Queue, alice: User, bob: User
    ) -> None:
        low = open_item(planning, revenue="100.00")
        high = open_item(planning, revenue="1000.00")
        clock.advance(timedelta(minutes=1))
        high_younger = open_item(planning, revenue="1000.00")
        high_younger_twin = open_item(planning, revenue="1000.00")
        claimed_by(open_item(planning, revenue="10000.00"), bob)
        snoozed = open_item(planning, revenue="100000.00")
        work_item_snooze(item=snoozed, until=clock.now() + timedelta(hours=1), user=bob)
        work_item_resolve(
            item=open_item(planning, revenue="100000.00"), reason_code="stock_arrived", note="", actor=SYSTEM
        )
        open_item(queue_get(slug="integration"), revenue="100000.00")

        taken = [work_item_claim_next(queue=planning, user=alice) for _ in range(5)]

        assert taken[:4] == [high, high_younger, high_younger_twin, low]
        assert taken[4] is None
        assert {i.pk for i in WorkItem.objects.filter(assignee=alice)} == {
            high.pk,
            high_younger.pk,
            high_younger_twin.pk,
            low.pk,
        }

    def test_claim_records_who_and_when(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)
        clock.advance(timedelta(minutes=5))

        claimed = work_item_claim_next(queue=planning, user=alice)
        assert claimed is not None
        item.refresh_from_db()

        assert (item.assignee, item.claimed_at) == (alice, T0 + timedelta(minutes=5))
        assert history(item) == [("opened", "test"), ("claimed", "alice")]

    def test_the_claimed_item_is_the_stored_row_field_by_field(self, planning: Queue, alice: User) -> None:
        item = open_item(planning, revenue="1234.56")

        claimed = work_item_claim_next(queue=planning, user=alice)

        stored = WorkItem.objects.get(pk=item.pk)
        assert claimed is not None
        assert {f.attname: getattr(claimed, f.attname) for f in WorkItem._meta.concrete_fields} == {
            f.attname: getattr(stored, f.attname) for f in WorkItem._meta.concrete_fields
        }
        assert (claimed.queue, claimed.assignee) == (planning, alice)

    @pytest.mark.skipif(not connection.features.has_select_for_update_skip_locked, reason="PostgreSQL only")
    def test_claim_next_is_a_prepared_statement_on_postgresql(self, planning: Queue, alice: User) -> None:
        for _ in range(3):
            open_item(planning)
            work_item_claim_next(queue=planning, user=alice)

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%SKIP LOCKED%"]
            )
            assert cursor.fetchone() == (1,)

    def test_empty_queue_gives_none_and_writes_nothing(self, planning: Queue, alice: User) -> None:
        assert work_item_claim_next(queue=planning, user=alice) is None
        assert WorkItemEvent.objects.count() == 0

    def test_snoozed_items_wait_until_their_time(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)
        work_item_snooze(item=item, until=T0 + timedelta(hours=2), user=alice, note="Supplier calls back")

        assert work_item_claim_next(queue=planning, user=alice) is None
        clock.advance(timedelta(hours=1, minutes=59))
        assert work_item_claim_next(queue=planning, user=alice) is None
        clock.advance(timedelta(minutes=1))
        assert work_item_claim_next(queue=planning, user=alice) == item

    def test_a_non_member_is_refused_and_nothing_changes(self, planning: Queue, carol: User) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with refused(PermissionDenied, "Queue 'Planning' belongs to team planner."):
            work_item_claim_next(queue=planning, user=carol)

        assert snapshot(item) == before

    def test_the_admin_role_may_claim_in_any_queue(self, planning: Queue, admin: User) -> None:
        item = open_item(planning)

        assert work_item_claim_next(queue=planning, user=admin) == item
        assert history(item) == [("opened", "test"), ("claimed", "root")]


class TestClaim:
    def test_claim_a_given_item(self, planning: Queue, alice: User) -> None:
        open_item(planning, revenue="5000.00")
        item = open_item(planning)

        claimed = work_item_claim(item=item, user=alice)
        item.refresh_from_db()

        assert claimed == item
        assert (item.assignee, item.claimed_at) == (alice, T0)
        assert history(item) == [("opened", "test"), ("claimed", "alice")]

    def test_claiming_your_own_item_again_changes_nothing(self, planning: Queue, alice: User) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)
        clock.advance(timedelta(minutes=1))

        work_item_claim(item=item, user=alice)

        assert snapshot(item) == before

    def test_an_item_claimed_by_someone_else_cannot_be_claimed(
        self, planning: Queue, alice: User, bob: User
    ) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)

        with refused(InvalidInput, f"Work item {item.pk} is claimed by alice."):
            work_item_claim(item=item, user=bob)

        assert snapshot(item) == before

    def test_a_non_member_cannot_claim_but_an_admin_may(
        self, planning: Queue, carol: User, admin: User
    ) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with refused(PermissionDenied, "Queue 'Planning' belongs to team planner."):
            work_item_claim(item=item, user=carol)
        assert snapshot(item) == before

        work_item_claim(item=item, user=admin)
        item.refresh_from_db()
        assert item.assignee == admin

    def test_a_missing_item_is_not_found(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)
        gone = WorkItem(pk=item.pk + 1000)

        with refused(NotFound, f"Work item {gone.pk} does not exist."):
            work_item_claim(item=gone, user=alice)


class TestRelease:
    def test_the_assignee_releases(self, planning: Queue, alice: User) -> None:
        item = claimed_by(open_item(planning), alice)

        work_item_release(item=item, user=alice)
        item.refresh_from_db()

        assert (item.assignee, item.claimed_at) == (None, None)
        assert history(item) == [("opened", "test"), ("claimed", "alice"), ("released", "alice")]
        assert work_item_claim_next(queue=planning, user=alice) == item

    def test_a_colleague_may_not_release(self, planning: Queue, alice: User, bob: User) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)

        with refused(
            PermissionDenied, f"Only the assignee may release work item {item.pk}; it is claimed by alice."
        ):
            work_item_release(item=item, user=bob)

        assert snapshot(item) == before

    def test_an_admin_may_release(self, planning: Queue, alice: User, admin: User) -> None:
        item = claimed_by(open_item(planning), alice)

        work_item_release(item=item, user=admin)
        item.refresh_from_db()

        assert item.assignee is None
        assert history(item)[-1] == ("released", "root")

    def test_releasing_an_unclaimed_item_changes_nothing(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)
        before = snapshot(item)

        work_item_release(item=item, user=alice)

        assert snapshot(item) == before


class TestReassign:
    def test_to_a_team_member(self, planning: Queue, alice: User, bob: User) -> None:
        item = claimed_by(open_item(planning), alice)
        clock.advance(timedelta(minutes=3))

        work_item_reassign(item=item, to=bob, actor=alice)
        item.refresh_from_db()

        assert (item.assignee, item.claimed_at) == (bob, T0 + timedelta(minutes=3))
        event = WorkItemEvent.objects.filter(item=item).last()
        assert (event.action, event.actor_user, event.data) == (
            "reassigned",
            alice,
            {"to": "bob", "previous": "alice"},
        )

    def test_an_unclaimed_item_to_a_colleague(self, planning: Queue, alice: User, bob: User) -> None:
        item = open_item(planning)

        work_item_reassign(item=item, to=bob, actor=alice)
        item.refresh_from_db()

        assert item.assignee == bob
        assert history(item) == [("opened", "test"), ("reassigned", "alice")]

    def test_not_to_someone_outside_the_team(self, planning: Queue, alice: User, carol: User) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)

        with refused(InvalidInput, "carol is not in team planner."):
            work_item_reassign(item=item, to=carol, actor=alice)

        assert snapshot(item) == before

    def test_a_colleague_cannot_take_over_a_claimed_item(
        self, planning: Queue, alice: User, bob: User
    ) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)

        with refused(
            PermissionDenied, f"Only the assignee may reassign work item {item.pk}; it is claimed by alice."
        ):
            work_item_reassign(item=item, to=bob, actor=bob)

        assert snapshot(item) == before

    def test_an_admin_may_reassign_anything(
        self, planning: Queue, alice: User, bob: User, admin: User
    ) -> None:
        item = claimed_by(open_item(planning), alice)

        work_item_reassign(item=item, to=bob, actor=admin)
        item.refresh_from_db()

        assert item.assignee == bob
        assert history(item)[-1] == ("reassigned", "root")

    def test_a_non_member_cannot_reassign(self, planning: Queue, bob: User, carol: User) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with pytest.raises(PermissionDenied):
            work_item_reassign(item=item, to=bob, actor=carol)

        assert snapshot(item) == before


class TestSnooze:
    def test_until_a_future_time(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)
        until = T0 + timedelta(days=1)

        work_item_snooze(item=item, until=until, user=alice, note="Waiting for the supplier")
        item.refresh_from_db()

        assert item.snoozed_until == until
        event = WorkItemEvent.objects.filter(item=item).last()
        assert (event.action, event.actor_user, event.note, event.data) == (
            "snoozed",
            alice,
            "Waiting for the supplier",
            {"until": until.isoformat()},
        )

    @pytest.mark.parametrize("until", [T0, T0 - timedelta(seconds=1)])
    def test_not_into_the_past(self, planning: Queue, alice: User, until: datetime) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with pytest.raises(InvalidInput) as caught:
            work_item_snooze(item=item, until=until, user=alice)

        assert caught.value.fields == {"until": ["Must be in the future."]}
        assert snapshot(item) == before

    def test_a_non_member_cannot_snooze(self, planning: Queue, carol: User) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with pytest.raises(PermissionDenied):
            work_item_snooze(item=item, until=T0 + timedelta(days=1), user=carol)

        assert snapshot(item) == before


class TestComment:
    def test_a_comment_is_history(self, planning: Queue, alice: User) -> None:
        item = open_item(planning)

        event = work_item_comment(item=item, text="  Called the warehouse.  ", user=alice)

        assert (event.action, event.actor_user, event.note, event.at) == (
            "comment",
            alice,
            "Called the warehouse.",
            T0,
        )
        assert history(item) == [("opened", "test"), ("comment", "alice")]

    @pytest.mark.parametrize("text", ["", "   \n"])
    def test_an_empty_comment_is_refused(self, planning: Queue, alice: User, text: str) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with pytest.raises(InvalidInput) as caught:
            work_item_comment(item=item, text=text, user=alice)

        assert caught.value.fields == {"text": ["Required."]}
        assert snapshot(item) == before

    def test_a_non_member_cannot_comment(self, planning: Queue, carol: User) -> None:
        item = open_item(planning)

        with pytest.raises(PermissionDenied):
            work_item_comment(item=item, text="Hello", user=carol)

        assert history(item) == [("opened", "test")]


class TestResolve:
    def test_the_assignee_resolves(self, planning: Queue, alice: User) -> None:
        item = claimed_by(open_item(planning), alice)
        clock.advance(timedelta(minutes=30))

        work_item_resolve(
            item=item,
            reason_code="stock_arrived",
            note="Arrived at 10:25",
            actor=Actor.of(alice),
            allowed_codes=CODES,
        )
        item.refresh_from_db()

        assert (item.state, item.resolved_at, item.resolved_by) == (
            "resolved",
            T0 + timedelta(minutes=30),
            alice,
        )
        assert (item.resolution_code, item.resolution_note) == ("stock_arrived", "Arrived at 10:25")
        assert item.next_sla_warning_at is None
        assert (item.assignee, item.claimed_at) == (alice, T0)
        event = WorkItemEvent.objects.filter(item=item).last()
        assert (event.action, event.actor_user, event.note, event.data) == (
            "resolved",
            alice,
            "Arrived at 10:25",
            {"reason_code": "stock_arrived"},
        )

    def test_resolving_an_unclaimed_item_claims_it_in_the_same_event(
        self, planning: Queue, alice: User
    ) -> None:
        item = open_item(planning)

        work_item_resolve(
            item=item, reason_code="backordered", note="", actor=Actor.of(alice), allowed_codes=CODES
        )
        item.refresh_from_db()

        assert (item.state, item.assignee, item.claimed_at, item.resolved_by) == (
            "resolved",
            alice,
            T0,
            alice,
        )
        assert history(item) == [("opened", "test"), ("resolved", "alice")]
        assert WorkItemEvent.objects.get(item=item, action="resolved").data == {
            "reason_code": "backordered",
            "claimed": True,
        }

    def test_someone_elses_claimed_item_is_refused(self, planning: Queue, alice: User, bob: User) -> None:
        item = claimed_by(open_item(planning), alice)
        before = snapshot(item)

        with refused(
            PermissionDenied, f"Only the assignee may resolve work item {item.pk}; it is claimed by alice."
        ):
            work_item_resolve(item=item, reason_code="stock_arrived", note="Mine now", actor=Actor.of(bob))

        assert snapshot(item) == before

    def test_an_admin_may_resolve_someone_elses_item(self, planning: Queue, alice: User, admin: User) -> None:
        item = claimed_by(open_item(planning), alice)

        work_item_resolve(item=item, reason_code="stock_arrived", note="", actor=Actor.of(admin))
        item.refresh_from_db()

        assert (item.state, item.assignee, item.resolved_by) == ("resolved", alice, admin)

    def test_a_non_member_is_refused(self, planning: Queue, carol: User) -> None:
        item = open_item(planning)
        before = snapshot(item)

        with pytest.raises(PermissionDenied):
            work_item_resolve(item=item, reason_code="stock_arrived", note="", actor=Actor.of(carol))

        assert snapshot(item) == before

    @pytest.mark.parametrize("code", ["no_such_code", ""])
    def test_an_unknown_reason_code_is_refused(self, planning: Queue, alice: User, code: str) -> None:
        claimed = claimed_by(open_item(planning), alice)
        unclaimed = open_item(planning)
        before = [snapshot(claimed), snapshot(unclaimed)]

        for item in (claimed, unclaimed):
            with pytest.raises(InvalidInput) as caught:
                work_item_resolve(
                    item=item, reason_code=code, note="", actor=Actor.of(alice), allowed_codes=CODES
                )
            assert (
                caught.value.message
                == "Choose a reason code: stock_arrived, alternate_warehouse, backordered."
            )
            assert caught.value.fields == {"reason_code": ["Unknown reason code."]}

        assert [snapshot(claimed), snapshot(unclaimed)] == before

    def test_a_system_closes_an_item_when_its_cause_clears(self, planning: Queue, alice: User) -> None:
        item = claimed_by(open_item(planning), alice)

        work_item_resolve(
            item=item, reason_code="stock_arrived", note="Re-allocated", actor=Actor.named("wms")
        )
        item.refresh_from_db()

        assert (item.state, item.resolved_by, item.assignee) == ("resolved", None, alice)
        assert history(item)[-1] == ("resolved", "wms")

    def test_a_resolved_item_cannot_be_claimed_or_resolved_again(
        self, planning: Queue, alice: User, bob: User
    ) -> None:
        item = claimed_by(open_item(planning), alice)
        work_item_resolve(item=item, reason_code="stock_arrived", note="", actor=Actor.of(alice))
        before = snapshot(item)
        resolved = f"Work item {item.pk} is resolved already."

        with refused(InvalidInput, resolved):
            work_item_claim(item=item, user=bob)
        with refused(InvalidInput, resolved):
            work_item_resolve(item=item, reason_code="backordered", note="", actor=Actor.of(alice))
        with refused(InvalidInput, resolved):
            work_item_release(item=item, user=alice)
        assert work_item_claim_next(queue=planning, user=bob) is None

        assert snapshot(item) == before


class TestBulk:
    def test_bulk_assign_applies_the_single_rules(
        self, planning: Queue, alice: User, bob: User, carol: User
    ) -> None:
        free = open_item(planning)
        mine = claimed_by(open_item(planning), alice)
        bobs = claimed_by(open_item(planning), bob)
        done = claimed_by(open_item(planning), alice)
        work_item_resolve(item=done, reason_code="stock_arrived", note="", actor=Actor.of(alice))
        refused_before = [snapshot(bobs), snapshot(done)]

        outcome = bulk([free, mine, bobs, done], lambda i: work_item_reassign(item=i, to=alice, actor=alice))

        assert outcome == BulkOutcome(
            done=[free.pk, mine.pk],
            failed={
                bobs.pk: f"Only the assignee may reassign work item {bobs.pk}; it is claimed by bob.",
                done.pk: f"Work item {done.pk} is resolved already.",
            },
        )
        assert set(WorkItem.objects.filter(assignee=alice, state="open").values_list("pk", flat=True)) == {
            free.pk,
            mine.pk,
        }
        assert [snapshot(bobs), snapshot(done)] == refused_before

        outsider = bulk([free], lambda i: work_item_reassign(item=i, to=carol, actor=alice))
        assert outsider == BulkOutcome(done=[], failed={free.pk: "carol is not in team planner."})

    def test_bulk_resolve_applies_the_single_rules(self, planning: Queue, alice: User, bob: User) -> None:
        mine = claimed_by(open_item(planning), alice)
        free = open_item(planning)
        bobs = claimed_by(open_item(planning), bob)
        bobs_before = snapshot(bobs)

        outcome = bulk(
            [mine, free, bobs],
            lambda i: work_item_resolve(
                item=i,
                reason_code="alternate_warehouse",
                note="Moved to W2",
                actor=Actor.of(alice),
                allowed_codes=CODES,
            ),
        )

        assert outcome == BulkOutcome(
            done=[mine.pk, free.pk],
            failed={bobs.pk: f"Only the assignee may resolve work item {bobs.pk}; it is claimed by bob."},
        )
        resolved = WorkItem.objects.filter(state="resolved").order_by("pk")
        assert [(i.pk, i.assignee, i.resolution_code) for i in resolved] == [
            (mine.pk, alice, "alternate_warehouse"),
            (free.pk, alice, "alternate_warehouse"),
        ]
        assert snapshot(bobs) == bobs_before

    def test_a_bad_reason_code_refuses_every_item_and_writes_nothing(
        self, planning: Queue, alice: User
    ) -> None:
        items = [claimed_by(open_item(planning), alice), open_item(planning)]
        before = [snapshot(i) for i in items]

        outcome = bulk(
            items,
            lambda i: work_item_resolve(
                item=i, reason_code="lost", note="", actor=Actor.of(alice), allowed_codes=CODES
            ),
        )

        message = "Choose a reason code: stock_arrived, alternate_warehouse, backordered."
        assert outcome == BulkOutcome(done=[], failed={items[0].pk: message, items[1].pk: message})
        assert [snapshot(i) for i in items] == before


def test_every_action_writes_exactly_one_event_with_its_actor(
    planning: Queue, alice: User, bob: User
) -> None:
    item = open_item(planning)
    steps = [
        lambda: work_item_claim_next(queue=planning, user=alice),
        lambda: work_item_comment(item=item, text="Looking", user=alice),
        lambda: work_item_snooze(item=item, until=T0 + timedelta(hours=1), user=alice),
        lambda: work_item_release(item=item, user=alice),
        lambda: work_item_claim(item=item, user=bob),
        lambda: work_item_reassign(item=item, to=alice, actor=bob),
        lambda: work_item_resolve(item=item, reason_code="backordered", note="", actor=Actor.of(alice)),
    ]
    counts = []
    for step in steps:
        step()
        counts.append(WorkItemEvent.objects.filter(item=item).count())

    assert counts == [2, 3, 4, 5, 6, 7, 8]
    assert history(item) == [
        ("opened", "test"),
        ("claimed", "alice"),
        ("comment", "alice"),
        ("snoozed", "alice"),
        ("released", "alice"),
        ("claimed", "bob"),
        ("reassigned", "bob"),
        ("resolved", "alice"),
    ]
    assert WorkItemEvent.objects.filter(actor_user=None, actor_system="").count() == 0
