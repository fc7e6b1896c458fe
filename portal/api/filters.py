"""List filters (django-filter), strict about their parameters.

A list view names its ``filterset_class``; only that filterset's parameters and the
pagination's (``cursor``, ``page_size``) are accepted: an unknown or misspelt one
answers 422 with ``errors.<name>`` instead of being ignored (``?stauts=`` would
otherwise list everything). Filters apply to ``list`` only, never to a detail read.
"""

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework import exceptions
from rest_framework.request import Request

from portal.api.pagination import CURSOR_PARAM, PAGE_SIZE_PARAM

if TYPE_CHECKING:
    from rest_framework.views import APIView


class StrictFilterBackend(filters.DjangoFilterBackend):
    def filter_queryset(self, request: Request, queryset: QuerySet, view: "APIView") -> QuerySet:
        if getattr(view, "action", None) != "list":
            return queryset
        filterset_class = self.get_filterset_class(view, queryset)
        known = {CURSOR_PARAM, PAGE_SIZE_PARAM}
        if filterset_class is not None:
            known |= set(filterset_class.base_filters)
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            accepted = ", ".join(sorted(known))
            raise exceptions.ValidationError(
                {name: [f"Unknown parameter; use {accepted}."] for name in unknown}
            )
        return super().filter_queryset(request, queryset, view)
