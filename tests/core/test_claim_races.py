"""Many people press "claim next" at once: each item goes to exactly one of them.

PostgreSQL proves it with row locks (FOR UPDATE SKIP LOCKED) and eight connections;
SQLite, the embedded default, serialises writers (IMMEDIATE transactions) and must never
double-assign either.
"""

import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection, connections, transaction
from django.db.models import Count

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import Queue, WorkItem, WorkItemEvent
from fulfillment.core.workqueue import Subject, rank, work_item_claim, work_item_claim_next, work_item_open

ON_SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


def race_queue(claimers: int) -> tuple[Queue, list[User]]:
    team = Group.objects.create(name="racers")
    users = [User.objects.create(username=f"claimer{n}") for n in range(claimers)]
    team.user_set.add(*users)
    return Queue.objects.create(slug="race", name="Race", team=team), users


def race(claimers: int, items: int, think: float = 0.0) -> None:
    """``claimers`` threads, each on its own connection, claim until the queue is empty,
    pausing ``think`` seconds after each claim."""
    queue, users = race_queue(claimers)
    now = clock.now()
    batch = []
    for n in range(items):
        item = WorkItem(
            queue=queue,
            kind=WorkItem.Kind.EXCEPTION,
            type="inventory_shortfall",
            title=f"Item {n}",
            revenue_at_risk=Decimal(n % 97 * 100),  # many equal keys: ties must not matter
            promised_at=now + timedelta(hours=n % 13),
            created_at=now,
        )
        rank(item)
        batch.append(item)
    WorkItem.objects.bulk_create(batch, batch_size=500)

    start = threading.Barrier(claimers)
    claimed: dict[str, list[int]] = {u.username: [] for u in users}
    errors: list[BaseException] = []

    def claim_all(user: User) -> None:
        try:
            start.wait()
            while (item := work_item_claim_next(queue=queue, user=user)) is not None:
                claimed[user.username].append(item.pk)
                time.sleep(think)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim_all, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert not any(t.is_alive() for t in threads)
    every_claim = [pk for pks in claimed.values() for pk in pks]
    assert len(every_claim) == items
    assert len(set(every_claim)) == items  # zero double claims
    assert all(claimed.values()), {name: len(pks) for name, pks in claimed.items()}

    stored = dict(WorkItem.objects.filter(queue=queue).values_list("pk", "assignee__username"))
    assert stored == {pk: name for name, pks in claimed.items() for pk in pks}
    events = WorkItemEvent.objects.filter(item__queue=queue, action="claimed")
    per_item = events.order_by().values("item").annotate(n=Count("id"))
    assert sorted((row["item"], row["n"]) for row in per_item) == [(pk, 1) for pk in sorted(every_claim)]
    assert Counter(events.values_list("actor_user__username", flat=True)) == {
        name: len(pks) for name, pks in claimed.items()
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_claimers_on_postgres_never_share_an_item() -> None:
    race(claimers=8, items=2000)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_acting_on_one_item_leaves_the_rest_of_its_queue_free() -> None:
    """The item's row is locked, not its queue's or team's: a claim in one open
    transaction does not hold up a claim of another item of the same queue."""
    queue, (first, second) = race_queue(2)
    one, other = (
        work_item_open(
            queue=queue,
            kind=WorkItem.Kind.EXCEPTION,
            type="inventory_shortfall",
            title=title,
            subject=Subject(),
            actor=Actor.named("test"),
        )
        for title in ("One", "Other")
    )
    holding, finish = threading.Event(), threading.Event()

    def hold_one() -> None:
        try:
            with transaction.atomic():
                work_item_claim(item=one, user=first)
                holding.set()
                finish.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_one)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            work_item_claim(item=other, user=second)
    finally:
        finish.set()
        holder.join(timeout=30)

    assert dict(WorkItem.objects.values_list("title", "assignee__username")) == {
        "One": "claimer0",
        "Other": "claimer1",
    }


if ON_SQLITE:  # on PostgreSQL the race above runs instead

    @pytest.mark.django_db(transaction=True)
    def test_four_claimers_on_sqlite_never_share_an_item() -> None:
        # Without a pause the writer that just committed takes the lock again before the
        # others wake from their busy wait, and one thread claims everything.
        race(claimers=4, items=400, think=0.005)
