"""The queue order: revenue at risk and promised time, folded into one stored key.

key = 3600 · weight_hours(revenue, tier, severity, escalation) - promised time (epoch s)

Sorting by the key (descending) puts the item with the earliest promise first, unless
another is worth more: every factor is expressed as hours by which an item may be
promised later and still rank equal. The key depends only on the item's inputs, never
on "now", so the order of two items never changes as time passes and nothing is
recomputed on a timer. docs/adr/0002-priority-key.md explains the chosen exchange rates.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# Ten times the revenue at risk is worth a promise one day earlier.
HOURS_PER_REVENUE_DECADE = 24
TIER_HOURS = {"strategic": 24, "key": 12, "standard": 0, "small": -6}
HOURS_PER_SEVERITY = 8  # severity 1 (low) … 3 (high)
HOURS_PER_ESCALATION = 24


@dataclass(frozen=True)
class RankFactor:
    label: str
    value: str
    hours: float


def rank_factors(
    *, revenue_at_risk: Decimal, customer_tier: str, severity: int, escalation_level: int
) -> list[RankFactor]:
    revenue = max(float(revenue_at_risk), 0.0)
    # log10(revenue), not log10(1 + revenue): only then is ten times the revenue worth
    # exactly HOURS_PER_REVENUE_DECADE. Revenue below 1 counts as none.
    revenue_hours = HOURS_PER_REVENUE_DECADE * math.log10(max(revenue, 1.0))
    return [
        RankFactor("Revenue at risk", f"{revenue:,.2f}", revenue_hours),
        RankFactor("Customer tier", customer_tier or "—", TIER_HOURS.get(customer_tier, 0)),
        RankFactor("Severity", str(severity), HOURS_PER_SEVERITY * severity),
        RankFactor("Escalation level", str(escalation_level), HOURS_PER_ESCALATION * escalation_level),
    ]


def priority_key(
    *,
    revenue_at_risk: Decimal,
    customer_tier: str,
    severity: int,
    escalation_level: int,
    anchor: datetime,
) -> int:
    """``anchor`` is the promised time, or the creation time when nothing was promised."""
    hours = sum(
        f.hours
        for f in rank_factors(
            revenue_at_risk=revenue_at_risk,
            customer_tier=customer_tier,
            severity=severity,
            escalation_level=escalation_level,
        )
    )
    return round(hours * 3600) - int(anchor.timestamp())
