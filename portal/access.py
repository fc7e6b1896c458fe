"""Who may open which screen: the role table of DESIGN.md §2, enforced on the server."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from fulfillment.core.roles import has_role

View = Callable[..., HttpResponse]


def role_required(*roles: str) -> Callable[[View], View]:
    """Let the request through only for a user holding one of ``roles``; others get 403."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your account has no role that may open this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
