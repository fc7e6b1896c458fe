from django.db import migrations

# code, name, queue, SLA (working minutes), severity, reason codes, description
TYPES = [
    (
        "inventory_shortfall", "Inventory shortfall", "planning", 240, 2,
        ["split_shipment", "alternate_warehouse", "backorder_accepted", "stock_arrived", "cancelled"],
        "Allocation could not reserve every unit the order needs.",
    ),
    (
        "pick_short", "Pick short", "planning", 120, 3,
        ["reallocated", "stock_corrected", "partial_shipment_accepted", "backorder_accepted", "cancelled"],
        "The warehouse picked fewer units than were allocated.",
    ),
    (
        "carrier_booking_failed", "Carrier booking failed", "planning", 120, 3,
        ["rebooked", "alternate_carrier", "manual_booking", "cancelled"],
        "The carrier refused or did not confirm the booking.",
    ),
    (
        "integration_sync_failed", "Integration sync failed", "integration", 120, 2,
        ["replayed", "fixed_at_source", "duplicate", "not_needed"],
        "A message to or from ERP, WMS or a carrier was dead-lettered after its last attempt.",
    ),
    (
        "late_shipment_risk", "Late-shipment risk", "customer-service", 240, 2,
        ["expedited", "customer_informed", "new_date_agreed", "risk_gone", "cancelled"],
        "The order is unlikely to ship in time for its promised date.",
    ),
    (
        "invalid_address", "Invalid address", "customer-service", 240, 2,
        ["address_corrected", "customer_confirmed", "cancelled"],
        "The ship-to address was rejected by the carrier or the WMS.",
    ),
    (
        "delivery_failed", "Delivery failed", "customer-service", 480, 2,
        ["redelivery_booked", "proof_of_delivery_received", "customer_collects", "returned_to_sender", "claim_filed"],
        "Delivery failed, or there is no proof of delivery.",
    ),
    (
        "invoice_blocked", "Invoice blocked", "invoicing", 960, 2,
        ["invoice_corrected", "credit_note_issued", "dispute_resolved", "written_off"],
        "The ERP blocked the invoice or the customer disputes it.",
    ),
    (
        "stalled_order", "Stalled order", "planning", 240, 2,
        ["chased", "order_moved_on", "hold_agreed", "cancelled"],
        "The order sat in one state longer than its deadline allows; the stall sweep raises it.",
    ),
]  # fmt: skip

HOUR, DAY = 60, 24 * 60
# Every non-terminal order state: minutes it may last, and the queue that owns a stall.
DEADLINES = [
    ("received", 30, "planning"),
    ("credit_check", 30, "planning"),
    ("credit_hold", 1 * DAY, "finance-approvals"),
    ("allocating", 30, "planning"),
    ("backordered", 14 * DAY, "planning"),
    ("partially_allocated", 2 * DAY, "planning"),
    ("allocated", 4 * HOUR, "planning"),
    ("awaiting_release", 1 * DAY, "finance-approvals"),
    ("released", 4 * HOUR, "planning"),
    ("picking", 8 * HOUR, "planning"),
    ("packed", 4 * HOUR, "planning"),
    ("partially_shipped", 3 * DAY, "planning"),
    ("shipped", 7 * DAY, "customer-service"),
    ("delivered", 3 * DAY, "invoicing"),
    ("invoiced", 30 * DAY, "invoicing"),
    ("on_hold", 3 * DAY, "customer-service"),
]


def create(apps, schema_editor):
    Queue = apps.get_model("core", "Queue")
    ExceptionType = apps.get_model("exceptions", "ExceptionType")
    StateDeadline = apps.get_model("exceptions", "StateDeadline")
    for code, name, queue, sla, severity, reasons, description in TYPES:
        ExceptionType.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "description": description,
                "default_queue": Queue.objects.get(slug=queue),
                "sla_minutes": sla,
                "severity": severity,
                "reason_codes": reasons,
            },
        )
    for state, minutes, queue in DEADLINES:
        StateDeadline.objects.get_or_create(
            state=state, defaults={"max_minutes": minutes, "queue": Queue.objects.get(slug=queue)}
        )


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0001_initial"), ("core", "0002_default_teams_and_queues")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
