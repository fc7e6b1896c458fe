"""The queue order (DESIGN.md §4, docs/adr/0002-priority-key.md): revenue at risk against
the promised date, tier, severity and escalation as hours, and an order that time alone
never changes."""

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulfillment.core import clock
from fulfillment.core.actors import Actor
from fulfillment.core.models import Queue, WorkItem
from fulfillment.core.priority import RankFactor, priority_key, rank_factors
from fulfillment.core.workqueue import Subject, rank, unclaimed, work_item_claim_next, work_item_open

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=BERLIN)
HOUR = 3600
SYSTEM = Actor.named("test")


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with clock.frozen(T0):
        yield


def key(
    *,
    revenue: str = "1000.00",
    tier: str = "standard",
    severity: int = 1,
    escalation: int = 0,
    promised: datetime = T0,
) -> int:
    return priority_key(
        revenue_at_risk=Decimal(revenue),
        customer_tier=tier,
        severity=severity,
        escalation_level=escalation,
        anchor=promised,
    )


def new_queue(slug: str) -> tuple[Queue, User]:
    """A queue of its own (no calendar: around the clock) and a member to claim from it."""
    team = Group.objects.create(name=f"team-{slug}")
    member = User.objects.create(username=f"member-{slug}")
    member.groups.add(team)
    return Queue.objects.create(slug=slug, name=slug, team=team), member


def open_item(
    queue: Queue,
    *,
    revenue: str = "1000.00",
    tier: str = "standard",
    severity: int = 1,
    escalation: int = 0,
    promised: datetime | None = T0,
) -> WorkItem:
    item = work_item_open(
        queue=queue,
        kind=WorkItem.Kind.EXCEPTION,
        type="inventory_shortfall",
        title="Short",
        subject=Subject(customer_tier=tier, revenue_at_risk=Decimal(revenue), promised_at=promised),
        actor=SYSTEM,
        severity=severity,
    )
    if escalation:  # as the escalation rules raise it
        item.escalation_level = escalation
        rank(item)
        item.save(update_fields=["escalation_level", "priority_key"])
    return item


def claim_order(queue: Queue, member: User) -> list[WorkItem]:
    claimed = []
    while (item := work_item_claim_next(queue=queue, user=member)) is not None:
        claimed.append(item)
    return claimed


class TestRevenueAgainstDate:
    @pytest.mark.parametrize("revenue", ["1000.00", "150.00", "1234.56", "31415.92", "7.00"])
    def test_ten_times_the_revenue_is_worth_exactly_one_day(self, revenue: str) -> None:
        tenfold = str(Decimal(revenue) * 10)

        assert key(revenue=tenfold, promised=T0 + timedelta(hours=24)) == key(revenue=revenue, promised=T0)
        assert key(revenue=tenfold, promised=T0) - key(revenue=revenue, promised=T0) == 24 * HOUR

    def test_more_revenue_at_the_same_later_date_ranks_higher(self) -> None:
        later = T0 + timedelta(hours=24)

        assert key(revenue="10100.00", promised=later) > key(revenue="1000.00", promised=T0)
        assert key(revenue="9900.00", promised=later) < key(revenue="1000.00", promised=T0)

    def test_the_key_counts_whole_seconds(self) -> None:
        """24 h x log10(1.000001) is 0.04 s: a cent more on 10,000 does not change the rank."""
        assert key(revenue="10000.01") == key(revenue="10000.00")
        assert key(revenue="10001.00") - key(revenue="10000.00") == 4  # 24 h x log10(1.0001) = 3.75 s

    def test_an_earlier_promise_ranks_higher_by_its_seconds(self) -> None:
        assert key(promised=T0) - key(promised=T0 + timedelta(hours=5)) == 5 * HOUR

    def test_revenue_below_one_counts_as_none(self) -> None:
        assert key(revenue="0.00") == key(revenue="1.00") == key(revenue="0.50") == key(revenue="-20.00")

    def test_the_queue_hands_out_the_tenfold_item_first_when_it_is_worth_more(self) -> None:
        queue, member = new_queue("revenue")
        soon = open_item(queue, revenue="1000.00", promised=T0)
        tie = open_item(queue, revenue="10000.00", promised=T0 + timedelta(hours=24))
        richer = open_item(queue, revenue="10100.00", promised=T0 + timedelta(hours=24))
        poorer = open_item(queue, revenue="990.00", promised=T0)

        assert tie.priority_key == soon.priority_key
        assert claim_order(queue, member) == [richer, soon, tie, poorer]


class TestTierSeverityEscalation:
    def test_tier_hours(self) -> None:
        standard = key(tier="standard")

        assert key(tier="strategic") - standard == 24 * HOUR
        assert key(tier="key") - standard == 12 * HOUR
        assert key(tier="small") - standard == -6 * HOUR
        assert key(tier="") == key(tier="unknown") == standard

    def test_strategic_promised_a_day_later_ranks_with_standard(self) -> None:
        assert key(tier="strategic", promised=T0 + timedelta(hours=24)) == key(tier="standard", promised=T0)

    def test_strategic_ranks_above_standard_in_the_queue(self) -> None:
        queue, member = new_queue("tier")
        standard = open_item(queue, tier="standard")
        strategic = open_item(queue, tier="strategic")

        assert strategic.priority_key - standard.priority_key == 24 * HOUR
        assert claim_order(queue, member) == [strategic, standard]

    def test_each_severity_level_is_eight_hours(self) -> None:
        assert key(severity=2) - key(severity=1) == 8 * HOUR
        assert key(severity=3) - key(severity=1) == 16 * HOUR

    def test_one_escalation_level_is_one_day(self) -> None:
        assert key(escalation=1) - key(escalation=0) == 24 * HOUR
        assert key(escalation=3) - key(escalation=0) == 72 * HOUR
        assert key(escalation=1, promised=T0 + timedelta(hours=24)) == key(escalation=0, promised=T0)

    def test_an_escalated_item_overtakes_in_the_queue(self) -> None:
        queue, member = new_queue("escalation")
        sooner = open_item(queue, promised=T0)
        escalated = open_item(queue, promised=T0 + timedelta(hours=23), escalation=1)

        assert claim_order(queue, member) == [escalated, sooner]


class TestTies:
    def test_same_key_older_first_then_lower_id(self) -> None:
        queue, member = new_queue("ties")
        clock.advance(timedelta(minutes=10))
        younger = open_item(queue)
        younger_twin = open_item(queue)
        with clock.frozen(T0):
            older = open_item(queue)

        assert older.priority_key == younger.priority_key == younger_twin.priority_key
        assert younger.pk < younger_twin.pk
        assert claim_order(queue, member) == [older, younger, younger_twin]

    def test_without_a_promise_the_creation_time_is_the_anchor(self) -> None:
        queue, member = new_queue("anchor")
        promised_now = open_item(queue, promised=T0)
        clock.advance(timedelta(hours=1))
        unpromised = open_item(queue, promised=None)

        assert unpromised.priority_key == promised_now.priority_key - HOUR
        assert claim_order(queue, member) == [promised_now, unpromised]


class TestTimeInvariance:
    def test_the_key_has_no_now_input(self) -> None:
        assert list(inspect.signature(priority_key).parameters) == [
            "revenue_at_risk",
            "customer_tier",
            "severity",
            "escalation_level",
            "anchor",
        ]
        at_t0 = key(revenue="4321.00", tier="key", severity=2, escalation=1)
        with clock.frozen(T0 + timedelta(days=400)):
            assert key(revenue="4321.00", tier="key", severity=2, escalation=1) == at_t0

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        inputs=st.lists(
            st.tuples(
                st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False),
                st.sampled_from(["strategic", "key", "standard", "small", ""]),
                st.integers(min_value=1, max_value=3),
                st.integers(min_value=0, max_value=3),
                st.none() | st.integers(min_value=-10 * 24 * 60, max_value=30 * 24 * 60),
            ),
            min_size=2,
            max_size=8,
        )
    )
    def test_the_queue_order_does_not_change_as_time_passes(
        self, inputs: list[tuple[Decimal, str, int, int, int | None]]
    ) -> None:
        """Open the same items 30 days apart (promises relative to then); open the first
        set, let 30 days pass, claim everything: the three orders are one."""
        with transaction.atomic():
            first, second = self._open_twice(inputs)
            transaction.set_rollback(True)
        assert first == second

    def _open_twice(
        self, inputs: list[tuple[Decimal, str, int, int, int | None]]
    ) -> tuple[list[int], list[int]]:
        # UTC: a frozen clock advances in wall time of its zone (here across Berlin's DST change).
        t1 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

        def open_all(queue: Queue) -> dict[int, int]:
            now = clock.now()
            items = [
                open_item(
                    queue,
                    revenue=str(revenue),
                    tier=tier,
                    severity=severity,
                    escalation=escalation,
                    promised=None if minutes is None else now + timedelta(minutes=minutes),
                )
                for revenue, tier, severity, escalation, minutes in inputs
            ]
            return {item.pk: n for n, item in enumerate(items)}

        with clock.frozen(t1):
            queue_a, member_a = new_queue("then")
            index_a = open_all(queue_a)
            order_then = [index_a[pk] for pk in self._ranked_ids(queue_a)]
            keys_then = dict(WorkItem.objects.filter(queue=queue_a).values_list("pk", "priority_key"))

            clock.advance(timedelta(days=30))
            queue_b, member_b = new_queue("later")
            index_b = open_all(queue_b)
            order_a_later = [index_a[item.pk] for item in claim_order(queue_a, member_a)]
            order_b = [index_b[item.pk] for item in claim_order(queue_b, member_b)]

        # Nothing was recomputed, and the same inputs 30 days later shift every key alike.
        keys_a_later = dict(WorkItem.objects.filter(queue=queue_a).values_list("pk", "priority_key"))
        assert keys_a_later == keys_then
        keys_b = {
            index_b[pk]: k
            for pk, k in WorkItem.objects.filter(queue=queue_b).values_list("pk", "priority_key")
        }
        assert {index_a[pk]: k - 30 * 24 * HOUR for pk, k in keys_then.items()} == keys_b
        assert order_then == order_a_later
        return order_then, order_b

    @staticmethod
    def _ranked_ids(queue: Queue) -> list[int]:
        """The order claim next uses, read without claiming."""
        return list(
            unclaimed(queue).order_by("-priority_key", "created_at", "id").values_list("pk", flat=True)
        )


class TestRankFactors:
    def test_why_an_item_ranks_where_it_does(self) -> None:
        factors = rank_factors(
            revenue_at_risk=Decimal("12345.60"), customer_tier="strategic", severity=2, escalation_level=1
        )

        assert [(f.label, f.value) for f in factors] == [
            ("Revenue at risk", "12,345.60"),
            ("Customer tier", "strategic"),
            ("Severity", "2"),
            ("Escalation level", "1"),
        ]
        assert [f.hours for f in factors[1:]] == [24, 16, 24]
        assert factors[0].hours == pytest.approx(98.196, abs=0.001)  # 24 x log10(12345.6)

    def test_round_figures(self) -> None:
        assert rank_factors(
            revenue_at_risk=Decimal("1000.00"), customer_tier="", severity=1, escalation_level=0
        ) == [
            RankFactor("Revenue at risk", "1,000.00", 72.0),
            RankFactor("Customer tier", "—", 0),
            RankFactor("Severity", "1", 8),
            RankFactor("Escalation level", "0", 0),
        ]

    def test_the_key_is_the_sum_of_the_factors_less_the_promise(self) -> None:
        factors = rank_factors(
            revenue_at_risk=Decimal("1000.00"), customer_tier="key", severity=3, escalation_level=2
        )

        assert sum(f.hours for f in factors) == 72 + 12 + 24 + 48
        assert key(revenue="1000.00", tier="key", severity=3, escalation=2) == 156 * HOUR - int(
            T0.timestamp()
        )
