"""Request and response bodies. Serializers check shapes and render; they never save.

Response serializers are read-only through and through (the order's ``status`` is a
protected FSM field: assigning it raises, see docs/adr/0001). Request serializers
check types and sizes so that a wrong body gets field errors (422); the rules behind
them (known customer, allowed move, …) are the services' and come back as their
``InvalidInput`` / ``TransitionNotAllowed``.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders import services as order_services
from orders.models import Carrier, Customer, Inventory, Invoice, Order, Product, Status, Warehouse


class ProblemSerializer(serializers.Serializer):
    """An error (RFC 9457 problem details), sent as ``application/problem+json``."""

    type = serializers.CharField(help_text="urn:fulfillment:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. transition_not_allowed.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation only: field path (dotted for nested fields) → messages.",
    )


# --- master data -------------------------------------------------------------------------


class CustomerSerializer(serializers.ModelSerializer):
    email = serializers.CharField(read_only=True, help_text="An e-mail address, or empty.")

    class Meta:
        model = Customer
        fields = ["id", "code", "name", "tier", "email", "credit_limit", "open_receivables", "credit_blocked"]
        read_only_fields = fields


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "sku", "description", "price", "cost", "lead_time_days"]
        read_only_fields = fields


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}:\d{2}$", "example": "16:00:00"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time without an offset (OpenAPI's ``format: time`` demands one)."""


class WarehouseSerializer(serializers.ModelSerializer):
    cutoff_time = LocalTimeField(read_only=True, help_text="Daily cut-off for same-day dispatch, local time.")

    class Meta:
        model = Warehouse
        fields = ["id", "code", "name", "region", "time_zone", "cutoff_time"]
        read_only_fields = fields


class CarrierSerializer(serializers.ModelSerializer):
    class Meta:
        model = Carrier
        fields = ["id", "code", "name"]
        read_only_fields = fields


class InventorySerializer(serializers.ModelSerializer):
    warehouse = serializers.CharField(source="warehouse.code", read_only=True)
    sku = serializers.CharField(source="product.sku", read_only=True)
    available = serializers.IntegerField(read_only=True)

    class Meta:
        model = Inventory
        fields = ["id", "warehouse", "sku", "on_hand", "allocated", "available", "counted_at", "updated_at"]
        read_only_fields = fields


# --- orders: reads -----------------------------------------------------------------------


class OrderSummarySerializer(serializers.ModelSerializer):
    customer = serializers.CharField(source="customer.code", read_only=True)
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    warehouse = serializers.CharField(source="warehouse.code", read_only=True, allow_null=True)

    class Meta:
        model = Order
        fields = [
            "id", "external_id", "status", "customer", "customer_name", "warehouse", "currency",
            "total", "promised_date", "created_at", "status_changed_at",
        ]  # fmt: skip
        read_only_fields = fields


class ShipToSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20, allow_blank=True, required=False, default="")
    country = serializers.CharField(min_length=2, max_length=2, help_text="ISO 3166 alpha-2.")


class CustomerRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.CharField()


class CreditSerializer(serializers.Serializer):
    credit_limit = serializers.DecimalField(max_digits=14, decimal_places=2)
    open_receivables = serializers.DecimalField(max_digits=14, decimal_places=2)
    open_orders = serializers.DecimalField(max_digits=14, decimal_places=2)
    exposure = serializers.DecimalField(max_digits=15, decimal_places=2)
    headroom = serializers.DecimalField(max_digits=15, decimal_places=2)
    blocked = serializers.BooleanField()


class LineSerializer(serializers.Serializer):
    line_no = serializers.IntegerField()
    sku = serializers.CharField(source="product.sku")
    description = serializers.CharField(source="product.description")
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    allocated_quantity = serializers.IntegerField()
    shipped_quantity = serializers.IntegerField()


class SkuQuantitySerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()


class AllocationSerializer(serializers.Serializer):
    warehouse = serializers.CharField()
    units = serializers.IntegerField()
    lines = SkuQuantitySerializer(many=True)


class ShipmentLineSerializer(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    quantity = serializers.IntegerField()


class ShipmentSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    warehouse = serializers.CharField(source="warehouse.code")
    carrier = serializers.CharField(source="carrier.code", allow_null=True)
    tracking = serializers.CharField()
    tracking_status = serializers.CharField()
    eta = serializers.DateTimeField(allow_null=True)
    shipped_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    signed_by = serializers.CharField()
    lines = ShipmentLineSerializer(many=True, source="lines.all")


class InvoiceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Invoice
        fields = ["number", "amount", "status", "issued_at"]
        read_only_fields = fields


class TimelineSerializer(serializers.Serializer):
    transition = serializers.CharField()
    from_state = serializers.CharField(help_text="Empty for the order's arrival.")
    to_state = serializers.ChoiceField(choices=Status.choices)
    actor = serializers.CharField(source="actor_label", help_text="User name or system (erp, wms, …).")
    reason = serializers.CharField()
    data = serializers.JSONField()
    at = serializers.DateTimeField()


class WorkItemRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    type = serializers.CharField()
    title = serializers.CharField()
    queue = serializers.CharField(source="queue.slug")
    assignee = serializers.CharField(source="assignee.username", allow_null=True)
    escalation_level = serializers.IntegerField()
    sla_due_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class OrderDetailSerializer(serializers.Serializer):
    """An order with everything the order page shows (``portal.api.orders.OrderView``)."""

    id = serializers.IntegerField(source="order.pk")
    external_id = serializers.CharField(source="order.external_id")
    status = serializers.ChoiceField(source="order.status", choices=Status.choices)
    held_from = serializers.CharField(source="order.held_from", help_text="On hold: the state it returns to.")
    status_changed_at = serializers.DateTimeField(source="order.status_changed_at")
    customer = CustomerRefSerializer(source="order.customer")
    warehouse = serializers.CharField(source="order.warehouse.code", allow_null=True)
    currency = serializers.CharField(source="order.currency")
    total = serializers.DecimalField(source="order.total", max_digits=14, decimal_places=2)
    promised_date = serializers.DateField(source="order.promised_date")
    at_risk = serializers.BooleanField(help_text="Promised for today or earlier and not shipped.")
    ship_to = ShipToSerializer()
    credit = CreditSerializer()
    lines = LineSerializer(many=True)
    allocations = AllocationSerializer(many=True)
    shipments = ShipmentSerializer(many=True)
    invoices = InvoiceSerializer(many=True)
    timeline = TimelineSerializer(many=True)
    work_items = WorkItemRefSerializer(many=True, help_text="Open work items about this order.")
    created_at = serializers.DateTimeField(source="order.created_at")
    updated_at = serializers.DateTimeField(source="order.updated_at")


# --- orders: requests --------------------------------------------------------------------


class ErpLineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=order_services.MAX_QUANTITY)
    unit_price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, max_value=order_services.MAX_UNIT_PRICE
    )


class ErpOrderSerializer(serializers.Serializer):
    """The ERP push contract: the order as the ERP knows it."""

    external_id = serializers.CharField(max_length=64, help_text="The ERP's order number; unique.")
    customer = serializers.CharField(max_length=32, help_text="Customer code.")
    warehouse = serializers.CharField(
        max_length=16,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Preferred warehouse code.",
    )
    promised_date = serializers.DateField()
    currency = serializers.CharField(min_length=3, max_length=3, default="EUR", help_text="ISO 4217.")
    ship_to = ShipToSerializer()
    lines = ErpLineSerializer(many=True, allow_empty=False, max_length=500)


class TransitionSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="Why; required to cancel."
    )
