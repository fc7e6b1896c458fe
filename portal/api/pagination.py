"""Keyset ("cursor") pagination for every API list: no OFFSET, stable while rows come and go.

A view names its sort order in ``ordering``, whose last field is unique (``id``), e.g.
``("-created_at", "-id")``. A page is read with a ``WHERE (created_at, id) < (…)`` seek
from the cursor, so its cost does not grow with the page number, and rows inserted
while a client pages neither repeat nor push rows it has not seen off its pages (DRF's
``CursorPagination`` falls back to an OFFSET among equal sort values; this one never).

The answer is ``{"next": url|null, "previous": url|null, "results": [...]}``; follow
``next`` until it is null. ``?page_size=`` (1 to ``max_page_size``) sets the length. A
cursor is opaque (base64 of the last row's sort values and the direction); one that
was cut or edited answers 422 with ``errors.cursor``.
"""

import base64
import binascii
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

if TYPE_CHECKING:
    from rest_framework.views import APIView

CURSOR_PARAM = "cursor"
PAGE_SIZE_PARAM = "page_size"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class KeysetPagination(BasePagination):
    page_size = 50
    max_page_size = 200

    def paginate_queryset(
        self, queryset: QuerySet, request: Request, view: "APIView | None" = None
    ) -> list[Model]:
        self.request = request
        self.ordering = tuple(view.ordering)
        self.fields = [name.lstrip("-") for name in self.ordering]
        self.descending = [name.startswith("-") for name in self.ordering]
        size = self._page_size(request)
        position, reverse = self._decode(request.query_params.get(CURSOR_PARAM), queryset.model)
        qs = queryset
        if position is not None:
            qs = qs.filter(self._seek(position, before=reverse))
        order = [self._flip(name) for name in self.ordering] if reverse else list(self.ordering)
        rows = list(qs.order_by(*order)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if reverse:
            rows.reverse()
            self.previous_link = self._link(rows[0], reverse=True) if more else None
            # Nothing before the cursor: the way forward is the first page.
            self.next_link = self._link(rows[-1], reverse=False) if rows else self._first_page()
        else:
            self.next_link = self._link(rows[-1], reverse=False) if more else None
            self.previous_link = self._link(rows[0], reverse=True) if rows and position is not None else None
        return rows

    # --- the seek ---------------------------------------------------------------------

    @staticmethod
    def _flip(name: str) -> str:
        return name[1:] if name.startswith("-") else f"-{name}"

    def _seek(self, position: list[Any], *, before: bool) -> Q:
        """Rows strictly after ``position`` in the sort order (``before``: strictly before),
        plus a plain range on the first field that an index can seek on."""
        seek = Q()
        for n, (field, descending) in enumerate(zip(self.fields, self.descending, strict=True)):
            lookup = "lt" if descending != before else "gt"
            equal = {f: v for f, v in zip(self.fields[:n], position[:n], strict=True)}
            seek |= Q(**equal, **{f"{field}__{lookup}": position[n]})
        first_lookup = "lte" if self.descending[0] != before else "gte"
        return Q(**{f"{self.fields[0]}__{first_lookup}": position[0]}) & seek

    # --- cursors ------------------------------------------------------------------------

    def _page_size(self, request: Request) -> int:
        raw = request.query_params.get(PAGE_SIZE_PARAM)
        if raw is None:
            return self.page_size
        digits = raw.lstrip("0") if raw.isascii() and raw.isdigit() else ""
        if not digits or len(digits) > 6 or int(digits) > self.max_page_size:
            raise exceptions.ValidationError(
                {PAGE_SIZE_PARAM: [f"Give a whole number from 1 to {self.max_page_size}."]}
            )
        return int(digits)

    def _decode(self, token: str | None, model: type[Model]) -> tuple[list[Any] | None, bool]:
        if token is None:
            return None, False
        invalid = exceptions.ValidationError(
            {CURSOR_PARAM: ["This cursor is not valid; start from the first page."]}
        )
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            values, reverse = data["p"], data["r"]
            if (
                not isinstance(values, list)
                or len(values) != len(self.fields)
                or not isinstance(reverse, bool)
            ):
                raise invalid
            position = []
            for field_name, value in zip(self.fields, values, strict=True):
                field = model._meta.get_field(field_name)
                if value is None or isinstance(value, bool | dict | list):
                    raise invalid
                python = field.to_python(value)
                field.get_prep_value(python)  # out-of-range numbers fail here
                position.append(python)
        except (
            binascii.Error,
            UnicodeDecodeError,
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
            FieldDoesNotExist,
            DjangoValidationError,
        ) as exc:
            raise invalid from exc
        return position, reverse

    # --- links and the answer -----------------------------------------------------------

    def _link(self, row: Model, *, reverse: bool) -> str:
        position = [_plain(getattr(row, field)) for field in self.fields]
        raw = json.dumps({"p": position, "r": reverse}, separators=(",", ":"))
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return replace_query_param(self.request.build_absolute_uri(), CURSOR_PARAM, cursor)

    def _first_page(self) -> str:
        return remove_query_param(self.request.build_absolute_uri(), CURSOR_PARAM)

    def get_next_link(self) -> str | None:
        return self.next_link

    def get_previous_link(self) -> str | None:
        return self.previous_link

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view: "APIView") -> list[dict[str, Any]]:
        return [
            {
                "name": CURSOR_PARAM,
                "required": False,
                "in": "query",
                "description": "The page to read: the `next` or `previous` link's cursor.",
                "schema": {"type": "string"},
            },
            {
                "name": PAGE_SIZE_PARAM,
                "required": False,
                "in": "query",
                "description": f"Rows per page, 1 to {self.max_page_size} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
