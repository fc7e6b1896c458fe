from decimal import Decimal

from django.db import migrations

# kind, name, min, max (None: no upper bound), approvers, reject action, SLA minutes.
POLICIES = [
    ("credit_hold", "Credit hold up to 50,000", "0.00", "50000.00", 1, "cancel", 240),
    ("credit_hold", "Credit hold above 50,000", "50000.01", None, 2, "cancel", 480),
    ("high_value_release", "High-value release 25,000 to 100,000", "25000.00", "100000.00", 1, "hold", 240),
    ("high_value_release", "High-value release above 100,000", "100000.01", None, 2, "hold", 480),
]


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    ApprovalPolicy = apps.get_model("approvals", "ApprovalPolicy")
    finance, _ = Group.objects.get_or_create(name="finance")
    for kind, name, low, high, approvers, reject_action, sla_minutes in POLICIES:
        ApprovalPolicy.objects.get_or_create(
            name=name,
            defaults={
                "kind": kind,
                "min_amount": Decimal(low),
                "max_amount": Decimal(high) if high is not None else None,
                "approvers_required": approvers,
                "approver_group": finance,
                "reject_action": reject_action,
                "sla_minutes": sla_minutes,
            },
        )


def remove(apps, schema_editor):
    ApprovalPolicy = apps.get_model("approvals", "ApprovalPolicy")
    ApprovalPolicy.objects.filter(name__in=[p[1] for p in POLICIES], requests__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial"), ("core", "0002_default_teams_and_queues")]
    operations = [migrations.RunPython(create, remove)]
