"""Escalation rules: triggers, actions, filters, fire-once, preview, validation, query counts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.core import clock, escalation, tasks, workqueue
from fulfillment.core.actors import Actor
from fulfillment.core.errors import InvalidInput, PermissionDenied
from fulfillment.core.models import EscalationRule, Notification, Queue, RuleFiring, WorkItem, WorkItemEvent
from fulfillment.core.priority import priority_key

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
SYSTEM = Actor.named("test")
pytestmark = pytest.mark.django_db


def person(name: str, *groups: str, active: bool = True) -> User:
    """A user without a password (hashing one costs a second per user)."""
    user = User.objects.create(username=name, email=f"{name}@example.com", is_active=active)
    user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    return user


@pytest.fixture
def desk() -> SimpleNamespace:
    """Two queues of two teams that work around the clock (no calendar), and people."""
    with clock.frozen(T0):
        desk_a, desk_b = Group.objects.create(name="desk-a"), Group.objects.create(name="desk-b")
        ns = SimpleNamespace(
            a=Queue.objects.create(slug="desk-a", name="Desk A", team=desk_a),
            b=Queue.objects.create(slug="desk-b", name="Desk B", team=desk_b),
            ann=person("ann", "desk-a"),
            bob=person("bob", "desk-a"),
            carl=person("carl", "desk-a", active=False),
            dora=person("dora", "desk-b"),
            eve=person("eve", "desk-b"),
            zoe=person("zoe"),
        )
        yield ns


def open_item(
    queue: Queue,
    title: str,
    *,
    revenue: str = "100",
    tier: str = "standard",
    kind: str = "exception",
    type: str = "inventory_shortfall",
    sla_minutes: int | None = None,
    promised_at: datetime | None = None,
) -> WorkItem:
    return workqueue.work_item_open(
        queue=queue, kind=kind, type=type, title=title, actor=SYSTEM, sla_minutes=sla_minutes,
        subject=workqueue.Subject(
            ref=title, customer_tier=tier, revenue_at_risk=Decimal(revenue), promised_at=promised_at
        ),
    )  # fmt: skip


def make_rule(**data: Any) -> EscalationRule:
    defaults = {"name": f"rule {EscalationRule.objects.count() + 1}", "trigger": "past_sla"}
    return escalation.rule_save(data={**defaults, **data}, actor=SYSTEM)


def fresh(item: WorkItem) -> WorkItem:
    return WorkItem.objects.get(pk=item.pk)


def firings() -> list[tuple[str, str, int]]:
    return list(RuleFiring.objects.order_by("pk").values_list("rule__name", "item__title", "level"))


def queue_order(queue: Queue) -> list[str]:
    return list(
        WorkItem.objects.filter(queue=queue, state="open")
        .order_by("-priority_key", "created_at", "id")
        .values_list("title", flat=True)
    )


# --- Triggers ------------------------------------------------------------------------


def test_unclaimed_for_counts_minutes_since_creation(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "late one")
        claimed = open_item(desk.a, "held")
        workqueue.work_item_claim(item=claimed, user=desk.ann)
        make_rule(name="unclaimed hour", trigger="unclaimed_for", trigger_value=60)

        clock.advance(timedelta(minutes=59, seconds=59))
        assert escalation.escalations_evaluate()["firings"] == 0
        clock.advance(timedelta(seconds=1))
        assert escalation.escalations_evaluate() == {"rules": 1, "firings": 1, "notifications": 0}

    assert firings() == [("unclaimed hour", "late one", 0)]
    assert fresh(item).escalation_level == 1
    assert fresh(claimed).escalation_level == 0


def test_unclaimed_for_counts_from_the_last_release(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "released")
        workqueue.work_item_claim(item=item, user=desk.ann)
        make_rule(name="unclaimed hour", trigger="unclaimed_for", trigger_value=60)
        clock.advance(timedelta(minutes=50))
        workqueue.work_item_release(item=item, user=desk.ann)

        clock.advance(timedelta(minutes=59))  # 109 min old, unclaimed for 59
        assert escalation.escalations_evaluate()["firings"] == 0
        clock.advance(timedelta(minutes=1))
        assert escalation.escalations_evaluate()["firings"] == 1


def test_unclaimed_for_waits_while_the_item_is_snoozed(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "snoozed")
        workqueue.work_item_snooze(item=item, until=T0 + timedelta(hours=3), user=desk.ann)
        make_rule(name="unclaimed hour", trigger="unclaimed_for", trigger_value=60)

        clock.advance(timedelta(hours=2, minutes=59))
        assert escalation.escalations_evaluate()["firings"] == 0
        clock.advance(timedelta(minutes=1))
        assert escalation.escalations_evaluate()["firings"] == 1


def test_past_sla_fires_only_after_the_due_time(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "two hours", sla_minutes=120)
        open_item(desk.a, "no sla")
        make_rule(name="breached", trigger="past_sla")
        assert fresh(item).sla_due_at == T0 + timedelta(hours=2)

        clock.advance(timedelta(hours=2))
        assert escalation.escalations_evaluate()["firings"] == 0
        clock.advance(timedelta(seconds=1))
        assert escalation.escalations_evaluate()["firings"] == 1

    assert firings() == [("breached", "two hours", 0)]


def test_sla_share_fires_when_the_warning_sweep_records_the_share(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "hundred minutes", sla_minutes=100)
        make_rule(name="three quarters", trigger="sla_share", trigger_value=75)

        clock.advance(timedelta(minutes=50))
        summary = tasks.evaluate_escalations()
        assert summary["sla_warnings"]["warnings"] == 1
        assert summary["escalations"]["firings"] == 0
        assert fresh(item).sla_warned_share == 50

        clock.advance(timedelta(minutes=24, seconds=59))
        assert tasks.evaluate_escalations()["escalations"]["firings"] == 0
        clock.advance(timedelta(seconds=1))
        summary = tasks.evaluate_escalations()

    assert summary == {
        "sla_warnings": {"warnings": 1, "notifications": 2},  # the team: ann and bob
        "escalations": {"rules": 1, "firings": 1, "notifications": 0},
    }
    assert fresh(item).sla_warned_share == 75
    assert firings() == [("three quarters", "hundred minutes", 0)]


def test_promised_within_fires_when_the_promise_is_n_hours_away(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        open_item(desk.a, "promised", promised_at=T0 + timedelta(hours=30))
        open_item(desk.a, "no promise")
        make_rule(name="day ahead", trigger="promised_within", trigger_value=24)

        clock.advance(timedelta(hours=5, minutes=59))
        assert escalation.escalations_evaluate()["firings"] == 0
        clock.advance(timedelta(minutes=1))
        assert escalation.escalations_evaluate()["firings"] == 1

    assert firings() == [("day ahead", "promised", 0)]


# --- Actions -------------------------------------------------------------------------


def test_raising_the_level_raises_the_key_and_moves_the_item_up_its_queue(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        top = open_item(desk.a, "top", revenue="1000", type="pick_short")
        low = open_item(desk.a, "low", revenue="200")
        make_rule(name="shortfalls", trigger="past_sla", type="inventory_shortfall")
        WorkItem.objects.filter(pk=low.pk).update(sla_due_at=T0)
        assert queue_order(desk.a) == ["top", "low"]

        clock.advance(timedelta(minutes=1))
        escalation.escalations_evaluate()

        low = fresh(low)
        assert low.escalation_level == 1
        assert low.priority_key == priority_key(
            revenue_at_risk=Decimal(200), customer_tier="standard", severity=1, escalation_level=1, anchor=T0
        )
        assert queue_order(desk.a) == ["low", "top"]
        assert workqueue.work_item_claim_next(queue=desk.a, user=desk.bob).pk == low.pk
        assert fresh(top).escalation_level == 0


def test_moving_to_another_queue_releases_a_claim_from_outside_the_new_team(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        outsider = open_item(desk.a, "held by ann", promised_at=T0)
        insider = open_item(desk.a, "held by dora", promised_at=T0)
        free = open_item(desk.a, "unheld", promised_at=T0)
        Group.objects.get(name="desk-a").user_set.add(desk.dora)
        workqueue.work_item_claim(item=outsider, user=desk.ann)
        workqueue.work_item_claim(item=insider, user=User.objects.get(pk=desk.dora.pk))
        make_rule(
            name="to desk b", trigger="promised_within", trigger_value=1, raise_level=False, move_to=desk.b
        )

        escalation.escalations_evaluate()

    moved = {i.title: (i.queue_id, i.assignee_id, i.escalation_level) for i in WorkItem.objects.all()}
    assert moved == {
        "held by ann": (desk.b.pk, None, 0),
        "held by dora": (desk.b.pk, desk.dora.pk, 0),
        "unheld": (desk.b.pk, None, 0),
    }
    assert fresh(outsider).claimed_at is None
    assert list(WorkItemEvent.objects.filter(action="released").values_list("item__title", "note")) == [
        ("held by ann", "Moved to Desk B by rule 'to desk b'.")
    ]
    assert fresh(free).sla_due_at is None


def test_notify_the_assignee(desk: SimpleNamespace, django_capture_on_commit_callbacks: Any) -> None:
    with clock.frozen(T0):
        held = open_item(desk.a, "held", promised_at=T0)
        open_item(desk.a, "unheld", promised_at=T0)
        workqueue.work_item_claim(item=held, user=desk.ann)
        make_rule(
            name="tell holder",
            trigger="promised_within",
            trigger_value=1,
            raise_level=False,
            notify="assignee",
        )

        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert escalation.escalations_evaluate()["notifications"] == 1
        assert mail.outbox == []  # nothing is sent before the commit
        for callback in callbacks:
            callback()

    assert list(Notification.objects.values_list("user__username", "item__title", "text")) == [
        ("ann", "held", "Escalated by rule 'tell holder': held (level 0)")
    ]
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["ann@example.com"], "[Fulfillment portal] Escalated by rule 'tell holder': held (level 0)")
    ]


def test_notify_the_team_of_the_queue_the_item_ends_up_in(
    desk: SimpleNamespace, django_capture_on_commit_callbacks: Any
) -> None:
    with clock.frozen(T0):
        open_item(desk.a, "first", promised_at=T0)
        open_item(desk.a, "second", promised_at=T0)
        make_rule(name="tell team", trigger="promised_within", trigger_value=1, move_to=desk.b, notify="team")

        with django_capture_on_commit_callbacks(execute=True):
            escalation.escalations_evaluate()

    notes = Notification.objects.order_by("user__username", "item__title")
    assert [(n.user.username, n.item.title) for n in notes] == [
        ("dora", "first"), ("dora", "second"), ("eve", "first"), ("eve", "second"),
    ]  # fmt: skip
    assert sorted((m.to, m.subject) for m in mail.outbox) == [
        (["dora@example.com"], "[Fulfillment portal] 2 work items need your attention"),
        (["eve@example.com"], "[Fulfillment portal] 2 work items need your attention"),
    ]
    assert mail.outbox[0].body == (
        "- Escalated by rule 'tell team': first (level 1)\n"
        "- Escalated by rule 'tell team': second (level 1)\n"
    )


def test_notify_a_named_user(desk: SimpleNamespace, django_capture_on_commit_callbacks: Any) -> None:
    with clock.frozen(T0):
        open_item(desk.a, "watched", promised_at=T0)
        make_rule(
            name="tell zoe", trigger="promised_within", trigger_value=1,
            raise_level=False, notify="user", notify_user=desk.zoe,
        )  # fmt: skip

        with django_capture_on_commit_callbacks(execute=True):
            escalation.escalations_evaluate()

    assert list(Notification.objects.values_list("user__username", "item__title")) == [("zoe", "watched")]
    assert [m.to for m in mail.outbox] == [["zoe@example.com"]]


# --- Matching ------------------------------------------------------------------------


@pytest.fixture
def assorted(desk: SimpleNamespace) -> SimpleNamespace:
    with clock.frozen(T0):
        soon = T0 + timedelta(hours=1)
        open_item(
            desk.a,
            "i1",
            kind="exception",
            type="inventory_shortfall",
            tier="key",
            revenue="100",
            promised_at=soon,
        )
        open_item(
            desk.a,
            "i2",
            kind="approval",
            type="credit_hold",
            tier="standard",
            revenue="5000",
            promised_at=soon,
        )
        open_item(
            desk.b,
            "i3",
            kind="exception",
            type="pick_short",
            tier="strategic",
            revenue="1000",
            promised_at=soon,
        )
        open_item(
            desk.a, "i4", kind="exception", type="pick_short", tier="key", revenue="2000", promised_at=soon
        )
        done = open_item(desk.a, "i5 resolved", promised_at=soon)
        workqueue.work_item_resolve(item=done, reason_code="fixed", note="", actor=SYSTEM)
    return desk


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"i1", "i2", "i3", "i4"}),
        ({"queue": "a"}, {"i1", "i2", "i4"}),
        ({"kind": "approval"}, {"i2"}),
        ({"type": "pick_short"}, {"i3", "i4"}),
        ({"customer_tier": "key"}, {"i1", "i4"}),
        ({"min_revenue": Decimal(1000)}, {"i2", "i3", "i4"}),
        ({"max_revenue": Decimal(1000)}, {"i1", "i3"}),
        ({"min_revenue": Decimal(1000), "max_revenue": Decimal(2000)}, {"i3", "i4"}),
        ({"queue": "a", "customer_tier": "key", "min_revenue": Decimal(500)}, {"i4"}),
    ],
)
def test_rules_match_on_queue_kind_type_tier_and_revenue_band(
    assorted: SimpleNamespace, filters: dict[str, Any], expected: set[str]
) -> None:
    if "queue" in filters:
        filters["queue"] = getattr(assorted, filters["queue"])
    with clock.frozen(T0):
        make_rule(name="filtered", trigger="promised_within", trigger_value=2, **filters)
        escalation.escalations_evaluate()

    assert {title for _, title, _ in firings()} == expected
    assert set(WorkItem.objects.filter(escalation_level=1).values_list("title", flat=True)) == expected


# --- Fire once -----------------------------------------------------------------------


def test_a_rule_fires_once_per_item_and_level(desk: SimpleNamespace) -> None:
    """A notify-only rule fires again once another rule raised the level; a rule that
    raises the level fires once per item at all, however long its trigger stays true."""
    with clock.frozen(T0):
        item = open_item(desk.a, "ageing")
        make_rule(
            name="remind", trigger="unclaimed_for", trigger_value=60,
            raise_level=False, notify="user", notify_user=desk.zoe,
        )  # fmt: skip
        make_rule(name="raise", trigger="unclaimed_for", trigger_value=60)

        clock.advance(timedelta(minutes=60))
        # remind fires at level 0, then raise lifts the item to level 1.
        assert escalation.escalations_evaluate() == {"rules": 2, "firings": 2, "notifications": 1}
        # remind fires again at the new level; raise does not fire a second time.
        assert escalation.escalations_evaluate() == {"rules": 2, "firings": 1, "notifications": 1}
        for _ in range(3):
            clock.advance(timedelta(hours=1))
            assert escalation.escalations_evaluate() == {"rules": 2, "firings": 0, "notifications": 0}

    assert firings() == [("remind", "ageing", 0), ("raise", "ageing", 0), ("remind", "ageing", 1)]
    assert fresh(item).escalation_level == 1
    assert Notification.objects.filter(user=desk.zoe).count() == 2


def test_layered_rules_raise_the_level_step_by_step(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "forgotten")
        make_rule(name="after 1 h", trigger="unclaimed_for", trigger_value=60)
        make_rule(name="after 4 h", trigger="unclaimed_for", trigger_value=240)
        levels = []
        for _ in range(5):
            clock.advance(timedelta(hours=1))
            escalation.escalations_evaluate()
            levels.append(fresh(item).escalation_level)

    assert levels == [1, 1, 1, 2, 2]
    assert firings() == [("after 1 h", "forgotten", 0), ("after 4 h", "forgotten", 1)]


def test_firings_are_recorded_in_the_items_history(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        item = open_item(desk.a, "breaching", sla_minutes=30)
        rule = make_rule(name="breach to b", trigger="past_sla", move_to=desk.b)
        clock.advance(timedelta(minutes=31))
        escalation.escalations_evaluate()

    event = item.events.get(action="escalated")
    assert (event.actor_label, event.at, event.note) == (
        "scheduler",
        T0 + timedelta(minutes=31),
        "Rule 'breach to b' fired (Unresolved past the SLA).",
    )
    assert event.data == {
        "rule_id": rule.pk, "rule": "breach to b", "trigger": "past_sla",
        "from_level": 0, "to_level": 1, "from_queue": "desk-a", "to_queue": "desk-b",
    }  # fmt: skip
    assert list(item.firings.values_list("rule__name", "level", "at")) == [
        ("breach to b", 0, T0 + timedelta(minutes=31))
    ]
    assert list(item.events.values_list("action", flat=True)) == ["opened", "escalated"]


# --- Preview -------------------------------------------------------------------------


def write_statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]


def test_preview_of_an_unsaved_rule_lists_its_matches_now_and_writes_nothing(
    assorted: SimpleNamespace,
) -> None:
    rule = escalation.rule_build(
        data={"name": "draft", "trigger": "promised_within", "trigger_value": 2, "queue": assorted.a}
    )
    counts = [m.objects.count() for m in (EscalationRule, RuleFiring, WorkItemEvent, Notification)]
    with clock.frozen(T0), CaptureQueriesContext(connection) as queries:
        preview = escalation.rule_preview(rule)
        short = escalation.rule_preview(rule, limit=1)

    assert preview.count == 3
    assert [i.title for i in preview.items] == ["i4", "i2", "i1"]  # queue order
    assert (short.count, [i.title for i in short.items]) == (3, ["i4"])
    assert write_statements(queries) == []
    assert rule.pk is None
    assert [m.objects.count() for m in (EscalationRule, RuleFiring, WorkItemEvent, Notification)] == counts


def test_preview_is_what_the_rule_then_fires_on(assorted: SimpleNamespace) -> None:
    with clock.frozen(T0):
        rule = make_rule(name="key accounts", trigger="promised_within", trigger_value=2, customer_tier="key")
        previewed = {i.pk for i in escalation.rule_preview(rule).items}
        escalation.escalations_evaluate()
        assert escalation.rule_preview(rule).count == 0  # fired already on both

    assert previewed == set(RuleFiring.objects.values_list("item_id", flat=True))
    assert len(previewed) == 2


def test_preview_of_an_invalid_rule_is_refused(desk: SimpleNamespace) -> None:
    rule = escalation.rule_build(data={"trigger": "unclaimed_for", "trigger_value": 0})
    with pytest.raises(InvalidInput) as err:
        escalation.rule_preview(rule)
    assert err.value.fields == {"trigger_value": ["Give the number of minutes, more than 0."]}


# --- Definitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"trigger": "unclaimed_for", "trigger_value": 0}, {"trigger_value"}),
        ({"trigger": "promised_within", "trigger_value": 0}, {"trigger_value"}),
        ({"trigger": "sla_share", "trigger_value": 0}, {"trigger_value"}),
        ({"trigger": "sla_share", "trigger_value": 101}, {"trigger_value"}),
        ({"trigger": "unclaimed_for", "trigger_value": "ten"}, {"trigger_value"}),
        ({"min_revenue": Decimal(500), "max_revenue": Decimal(100)}, {"max_revenue"}),
        ({"min_revenue": Decimal(-1)}, {"min_revenue"}),
        ({"max_revenue": "lots"}, {"max_revenue"}),
        ({"max_revenue": Decimal(10) ** 12}, {"max_revenue"}),
        ({"trigger": "past_sla", "trigger_value": -5}, {"trigger_value"}),
        ({"notify": "user"}, {"notify_user"}),
        ({"notify": "everyone"}, {"notify"}),
        ({"raise_level": False}, {NON_FIELD_ERRORS}),
        ({"queue": "a", "move_to": "a"}, {"move_to"}),
        ({"kind": "incident"}, {"kind"}),
        ({"trigger": "sometime"}, {"trigger"}),
        ({"name": "  "}, {"name"}),
        ({"name": "taken"}, {"name"}),
        ({"colour": "red"}, {"colour"}),
        (
            {"name": "", "trigger": "unclaimed_for", "raise_level": False},
            {"name", "trigger_value", NON_FIELD_ERRORS},
        ),
    ],
)
def test_an_invalid_rule_definition_is_refused_and_nothing_is_saved(
    desk: SimpleNamespace, data: dict[str, Any], fields: set[str]
) -> None:
    make_rule(name="taken")
    for name in ("queue", "move_to"):
        if name in data:
            data[name] = getattr(desk, data[name])
    with pytest.raises(InvalidInput) as err:
        make_rule(**{"name": "new", **data})
    assert set(err.value.fields) == fields
    assert list(EscalationRule.objects.values_list("name", flat=True)) == ["taken"]


def test_an_invalid_change_leaves_the_saved_rule_as_it_was(desk: SimpleNamespace) -> None:
    rule = make_rule(name="stable", trigger="unclaimed_for", trigger_value=30)
    with pytest.raises(InvalidInput):
        escalation.rule_save(data={"trigger_value": 0, "notify": "team"}, actor=SYSTEM, rule=rule)
    rule.refresh_from_db()
    assert (rule.trigger_value, rule.notify) == (30, "")


def test_only_admins_save_or_delete_rules(desk: SimpleNamespace) -> None:
    admin = person("root", "admin")
    rule = escalation.rule_save(data={"name": "by admin", "trigger": "past_sla"}, actor=Actor.of(admin))
    with pytest.raises(PermissionDenied):
        escalation.rule_save(data={"name": "by ann", "trigger": "past_sla"}, actor=Actor.of(desk.ann))
    with pytest.raises(PermissionDenied):
        escalation.rule_delete(rule=rule, actor=Actor.of(desk.ann))
    assert list(EscalationRule.objects.values_list("name", flat=True)) == ["by admin"]

    escalation.rule_delete(rule=rule, actor=Actor.of(admin))
    assert not EscalationRule.objects.exists()


def test_inactive_rules_do_not_fire(desk: SimpleNamespace) -> None:
    with clock.frozen(T0):
        open_item(desk.a, "due", promised_at=T0)
        make_rule(name="off", trigger="promised_within", trigger_value=1, is_active=False)
        assert escalation.escalations_evaluate() == {"rules": 0, "firings": 0, "notifications": 0}
    assert not RuleFiring.objects.exists()


# --- Set-based evaluation ------------------------------------------------------------


def test_the_number_of_queries_does_not_grow_with_the_number_of_items(desk: SimpleNamespace) -> None:
    def evaluation_queries(batch: str, size: int) -> int:
        with clock.frozen(T0):
            items = [open_item(desk.a, f"{batch} {n}", type=batch, promised_at=T0) for n in range(size)]
            for item in items[:2]:
                workqueue.work_item_claim(item=item, user=desk.ann)
            EscalationRule.objects.update(is_active=False)
            make_rule(
                name=batch, trigger="promised_within", trigger_value=1, type=batch,
                move_to=desk.b, notify="team",
            )  # fmt: skip
            with CaptureQueriesContext(connection) as queries:
                summary = escalation.escalations_evaluate()
        assert summary == {"rules": 1, "firings": size, "notifications": 2 * size}
        return len(queries)

    assert evaluation_queries("few", 5) == evaluation_queries("many", 60)
    assert WorkItem.objects.filter(queue=desk.b, escalation_level=1, assignee__isnull=True).count() == 65


# --- Admin pages ---------------------------------------------------------------------


def rule_form(queue: Queue, **overrides: str) -> dict[str, str]:
    form = {
        "name": "admin rule", "is_active": "on", "queue": str(queue.pk), "kind": "", "type": "",
        "customer_tier": "", "min_revenue": "", "max_revenue": "", "trigger": "promised_within",
        "trigger_value": "2", "raise_level": "on", "move_to": "", "notify": "", "notify_user": "",
    }  # fmt: skip
    return {**form, **overrides}


def test_admin_previews_a_rule_before_saving_it_and_then_saves_it(
    assorted: SimpleNamespace, client: Any
) -> None:
    client.force_login(User.objects.create(username="boss", is_staff=True, is_superuser=True))
    with clock.frozen(T0):
        preview = client.post(
            "/admin/core/escalationrule/preview/", rule_form(assorted.a, customer_tier="key")
        )
        assert preview.status_code == 200
        assert (preview.context["preview"].count, [i.title for i in preview.context["preview"].items]) == (
            2, ["i4", "i1"],
        )  # fmt: skip
        assert not EscalationRule.objects.exists()

        saved = client.post("/admin/core/escalationrule/add/", rule_form(assorted.a, customer_tier="key"))
        assert saved.status_code == 302
        rule = EscalationRule.objects.get()
        assert (rule.name, rule.queue_id, rule.customer_tier, rule.trigger_value) == (
            "admin rule", assorted.a.pk, "key", 2,
        )  # fmt: skip
        escalation.escalations_evaluate()
    assert sorted(title for _, title, _ in firings()) == ["i1", "i4"]
    assert (
        'formaction="/admin/core/escalationrule/preview/"'
        in client.get("/admin/core/escalationrule/add/").text
    )
    change = client.get(f"/admin/core/escalationrule/{rule.pk}/change/").text
    assert f'formaction="/admin/core/escalationrule/{rule.pk}/preview/"' in change
    assert "0 open item(s)" in change  # it fired on both already
    item_page = client.get(f"/admin/core/workitem/{WorkItem.objects.get(title='i4').pk}/change/").text
    assert "admin rule" in item_page  # the firing, shown on the item


def test_admin_shows_the_rule_errors_and_saves_nothing(desk: SimpleNamespace, client: Any) -> None:
    client.force_login(User.objects.create(username="boss", is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/core/escalationrule/add/",
        rule_form(desk.a, move_to=str(desk.a.pk), raise_level="", trigger_value="0"),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "trigger_value": ["Give the number of hours, more than 0."],
        "move_to": ["Move to a queue other than the one the rule watches."],
    }
    assert not EscalationRule.objects.exists()


def test_a_large_backlog_is_worked_off_in_batches(
    desk: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(escalation, "BATCH_SIZE", 3)
    with clock.frozen(T0):
        items = [open_item(desk.a, f"backlog {n}", promised_at=T0) for n in range(5)]
        make_rule(name="backlog", trigger="promised_within", trigger_value=1)
        assert [escalation.escalations_evaluate()["firings"] for _ in range(3)] == [3, 2, 0]
    assert firings() == [("backlog", f"backlog {n}", 0) for n in range(5)]
    assert [fresh(item).escalation_level for item in items] == [1] * 5
