from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from approvals import services
from approvals.models import ApprovalPolicy, Kind
from fulfillment.core.errors import InvalidInput

pytestmark = pytest.mark.django_db

D = Decimal


def bands() -> list[tuple[object, ...]]:
    return list(
        ApprovalPolicy.objects.order_by("kind", "min_amount").values_list(
            "kind",
            "name",
            "min_amount",
            "max_amount",
            "approvers_required",
            "approver_group__name",
            "reject_action",
            "sla_minutes",
            "is_active",
        )
    )


DEFAULTS = [
    ("credit_hold", "Credit hold up to 50,000", D("0.00"), D("50000.00"), 1, "finance", "cancel", 240, True),
    ("credit_hold", "Credit hold above 50,000", D("50000.01"), None, 2, "finance", "cancel", 480, True),
    (
        "high_value_release",
        "High-value release 25,000 to 100,000",
        D("25000.00"),
        D("100000.00"),
        1,
        "finance",
        "hold",
        240,
        True,
    ),
    (
        "high_value_release",
        "High-value release above 100,000",
        D("100000.01"),
        None,
        2,
        "finance",
        "hold",
        480,
        True,
    ),
]


def test_the_migration_creates_the_default_bands() -> None:
    assert bands() == DEFAULTS


@pytest.mark.parametrize(
    ("kind", "amount", "policy"),
    [
        (Kind.CREDIT_HOLD, "0.00", "Credit hold up to 50,000"),
        (Kind.CREDIT_HOLD, "50000.00", "Credit hold up to 50,000"),
        (Kind.CREDIT_HOLD, "50000.01", "Credit hold above 50,000"),
        (Kind.CREDIT_HOLD, "9999999.99", "Credit hold above 50,000"),
        (Kind.HIGH_VALUE_RELEASE, "25000.00", "High-value release 25,000 to 100,000"),
        (Kind.HIGH_VALUE_RELEASE, "100000.00", "High-value release 25,000 to 100,000"),
        (Kind.HIGH_VALUE_RELEASE, "100000.01", "High-value release above 100,000"),
    ],
)
def test_the_band_covering_the_amount_applies(kind: str, amount: str, policy: str) -> None:
    assert services.approval_policy_for(kind=kind, amount=D(amount)).name == policy


def test_an_amount_no_band_covers_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"No active high-value order release policy covers 24,999\.99"):
        services.approval_policy_for(kind=Kind.HIGH_VALUE_RELEASE, amount=D("24999.99"))


def test_inactive_bands_do_not_apply() -> None:
    ApprovalPolicy.objects.filter(name="Credit hold above 50,000").update(is_active=False)
    with pytest.raises(InvalidInput):
        services.approval_policy_for(kind=Kind.CREDIT_HOLD, amount=D("60000"))


def test_high_value_threshold_is_the_lowest_active_high_value_band() -> None:
    assert services.high_value_threshold() == D("25000.00")
    lower = ApprovalPolicy.objects.get(name="High-value release 25,000 to 100,000")
    lower.is_active = False
    services.approval_policy_save(policy=lower)
    assert services.high_value_threshold() == D("100000.01")
    ApprovalPolicy.objects.filter(kind=Kind.HIGH_VALUE_RELEASE).update(is_active=False)
    assert services.high_value_threshold() is None


@pytest.mark.parametrize(
    ("low", "high"),
    [("40000", "60000"), ("50000", "50000"), ("0", None), ("70000", None), ("0", "0")],
)
def test_an_overlapping_band_is_refused_and_nothing_saved(low: str, high: str | None) -> None:
    policy = ApprovalPolicy(
        kind=Kind.CREDIT_HOLD,
        name="Overlap",
        min_amount=D(low),
        max_amount=D(high) if high else None,
        approvers_required=1,
        reject_action="cancel",
    )
    with pytest.raises(InvalidInput) as caught:
        services.approval_policy_save(policy=policy)
    assert caught.value.fields["min_amount"][0].startswith(
        f"The band {policy.band} overlaps policy 'Credit hold"
    )
    assert bands() == DEFAULTS


def test_widening_an_existing_band_into_its_neighbour_is_refused() -> None:
    lower = ApprovalPolicy.objects.get(name="Credit hold up to 50,000")
    lower.max_amount = D("50000.01")
    with pytest.raises(InvalidInput) as caught:
        services.approval_policy_save(policy=lower)
    assert caught.value.fields == {
        "min_amount": [
            "The band 0.00 to 50,000.01 overlaps policy 'Credit hold above 50,000' (from 50,000.01) "
            "of the same kind; bands must not overlap."
        ]
    }
    assert bands() == DEFAULTS


def test_model_clean_refuses_an_overlap_as_the_admin_form_does() -> None:
    policy = ApprovalPolicy(
        kind=Kind.HIGH_VALUE_RELEASE,
        name="Mid",
        min_amount=D("90000"),
        max_amount=D("95000"),
        approvers_required=1,
        reject_action="hold",
        approver_group=Group.objects.get(name="finance"),
    )
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    assert list(caught.value.message_dict) == ["min_amount"]


def test_bands_of_another_kind_or_inactive_ones_do_not_clash() -> None:
    other_kind = services.approval_policy_save(
        policy=ApprovalPolicy(
            kind=Kind.HIGH_VALUE_RELEASE,
            name="Small releases",
            min_amount=D("10000"),
            max_amount=D("24999.99"),
            approvers_required=1,
            reject_action="hold",
        )
    )
    assert other_kind.approver_group.name == "finance"  # the default group
    assert services.high_value_threshold() == D("10000.00")
    draft = services.approval_policy_save(
        policy=ApprovalPolicy(
            kind=Kind.CREDIT_HOLD,
            name="Draft",
            min_amount=D("0"),
            max_amount=D("1000"),
            approvers_required=2,
            reject_action="cancel",
            is_active=False,
        )
    )
    draft.is_active = True
    with pytest.raises(InvalidInput):
        services.approval_policy_save(policy=draft)
    assert ApprovalPolicy.objects.get(pk=draft.pk).is_active is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_amount": D("-1")}, "min_amount"),
        ({"min_amount": D("10"), "max_amount": D("5")}, "max_amount"),
        ({"approvers_required": 3}, "approvers_required"),
    ],
)
def test_an_invalid_band_is_refused(changes: dict[str, object], field: str) -> None:
    ApprovalPolicy.objects.update(is_active=False)
    policy = ApprovalPolicy(kind=Kind.CREDIT_HOLD, name="Bad", reject_action="cancel", **changes)
    with pytest.raises(InvalidInput) as caught:
        services.approval_policy_save(policy=policy)
    assert field in caught.value.fields
    assert not ApprovalPolicy.objects.filter(name="Bad").exists()
