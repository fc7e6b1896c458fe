"""Master data reads: customers, products, warehouses, carriers and inventory.

All four roles may read them (``read`` scope). Lists only, keyset-paginated by code
(inventory by id), with exact-match filters.
"""

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework import mixins

from orders.models import Carrier, Customer, Inventory, Product, Tier, Warehouse
from portal.api import serializers
from portal.api.base import ApiViewSet
from portal.api.permissions import EVERY_ROLE, read

READ_ONLY = {"list": read(*EVERY_ROLE)}


class CustomerFilter(filters.FilterSet):
    code = filters.CharFilter(field_name="code", max_length=32)
    tier = filters.ChoiceFilter(field_name="tier", choices=Tier.choices)

    class Meta:
        model = Customer
        fields = ["code", "tier"]


class CustomerViewSet(mixins.ListModelMixin, ApiViewSet):
    """Customers with their tier and credit figures."""

    access = READ_ONLY
    serializer_class = serializers.CustomerSerializer
    filterset_class = CustomerFilter
    ordering = ("code", "id")
    queryset = Customer.objects.all()


class ProductFilter(filters.FilterSet):
    sku = filters.CharFilter(field_name="sku", max_length=64)

    class Meta:
        model = Product
        fields = ["sku"]


class ProductViewSet(mixins.ListModelMixin, ApiViewSet):
    access = READ_ONLY
    serializer_class = serializers.ProductSerializer
    filterset_class = ProductFilter
    ordering = ("sku", "id")
    queryset = Product.objects.all()


class WarehouseFilter(filters.FilterSet):
    region = filters.CharFilter(field_name="region", max_length=64)

    class Meta:
        model = Warehouse
        fields = ["region"]


class WarehouseViewSet(mixins.ListModelMixin, ApiViewSet):
    access = READ_ONLY
    serializer_class = serializers.WarehouseSerializer
    filterset_class = WarehouseFilter
    ordering = ("code", "id")
    queryset = Warehouse.objects.all()


class CarrierViewSet(mixins.ListModelMixin, ApiViewSet):
    access = READ_ONLY
    serializer_class = serializers.CarrierSerializer
    ordering = ("code", "id")
    queryset = Carrier.objects.all()


class InventoryFilter(filters.FilterSet):
    warehouse = filters.CharFilter(field_name="warehouse__code", max_length=16, help_text="Warehouse code.")
    sku = filters.CharFilter(field_name="product__sku", max_length=64)

    class Meta:
        model = Inventory
        fields = ["warehouse", "sku"]


class InventoryViewSet(mixins.ListModelMixin, ApiViewSet):
    """Stock per warehouse and SKU: on hand, allocated to orders, available."""

    access = READ_ONLY
    serializer_class = serializers.InventorySerializer
    filterset_class = InventoryFilter
    ordering = ("id",)

    def get_queryset(self) -> QuerySet[Inventory]:
        return Inventory.objects.select_related("warehouse", "product")
