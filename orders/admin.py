from django.contrib import admin
from django.http import HttpRequest

from orders.models import (
    Carrier,
    Customer,
    Inventory,
    Invoice,
    Order,
    OrderLine,
    OrderTransition,
    Product,
    Shipment,
    Warehouse,
)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "tier", "credit_limit", "open_receivables", "credit_blocked"]
    list_filter = ["tier", "credit_blocked"]
    search_fields = ["code", "name"]


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region", "time_zone", "cutoff_time"]


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "description", "price", "cost", "lead_time_days"]
    search_fields = ["sku", "description"]


@admin.register(Inventory)
class InventoryAdmin(admin.ModelAdmin):
    list_display = ["product", "warehouse", "on_hand", "allocated", "available"]
    list_filter = ["warehouse"]
    search_fields = ["product__sku"]
    list_select_related = ["product", "warehouse"]
    readonly_fields = ["allocated"]
    raw_id_fields = ["product"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = [
        "line_no",
        "product",
        "quantity",
        "unit_price",
        "allocated_quantity",
        "shipped_quantity",
    ]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderTransitionInline(admin.TabularInline):
    model = OrderTransition
    extra = 0
    can_delete = False
    readonly_fields = [
        "at",
        "transition",
        "from_state",
        "to_state",
        "actor_user",
        "actor_system",
        "reason",
        "data",
    ]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only view of orders: state changes go through the services (screens and API),
    credit holds through finance approval."""

    list_display = ["external_id", "customer", "status", "total", "promised_date", "warehouse"]
    list_filter = ["status", "warehouse"]
    search_fields = ["external_id", "customer__code"]
    list_select_related = ["customer", "warehouse"]
    raw_id_fields = ["customer"]
    show_full_result_count = False
    inlines = [OrderLineInline, OrderTransitionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        return [f.name for f in Order._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "order",
        "warehouse",
        "carrier",
        "tracking",
        "shipped_at",
        "delivered_at",
    ]
    raw_id_fields = ["order"]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "order", "amount", "status", "issued_at"]
    raw_id_fields = ["order"]
