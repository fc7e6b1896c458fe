from datetime import time

from django.db import migrations

TEAMS = ["customer_service", "planner", "finance", "admin"]
QUEUES = [
    ("customer-service", "Customer service", "customer_service", "Late-shipment risks, address and delivery problems."),
    ("planning", "Planning", "planner", "Shortfalls, short picks, carrier bookings and stalled orders."),
    ("integration", "Integration", "planner", "Messages to or from ERP, WMS and carriers that failed."),
    ("finance-approvals", "Finance approvals", "finance", "Credit holds and high-value releases."),
    ("invoicing", "Invoicing", "finance", "Blocked or disputed invoices."),
]


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Queue = apps.get_model("core", "Queue")
    BusinessCalendar = apps.get_model("core", "BusinessCalendar")
    for name in TEAMS:
        group, _ = Group.objects.get_or_create(name=name)
        BusinessCalendar.objects.get_or_create(
            team=group,
            defaults={
                "time_zone": "Europe/Berlin",
                "working_days": [1, 2, 3, 4, 5],
                "day_starts": time(8),
                "day_ends": time(18),
            },
        )
    for slug, name, team, description in QUEUES:
        Queue.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "team": Group.objects.get(name=team), "description": description},
        )


class Migration(migrations.Migration):
    dependencies = [("core", "0001_work_queues"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
