"""The navigation every page shows, from the user's roles."""

from typing import Any

from django.http import HttpRequest

from fulfillment.core.roles import ADMIN, CUSTOMER_SERVICE, FINANCE, PLANNER, ROLES, roles_of

ROLE_LABELS = {CUSTOMER_SERVICE: "Customer service", PLANNER: "Planner", FINANCE: "Finance", ADMIN: "Admin"}
# (url name, label, roles that see it, url-name prefixes that make it the active section)
SECTIONS: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("home", "Home", (), ("home",)),
    ("my-work", "My work", ROLES, ("my-work",)),
    ("queues", "Queues", ROLES, ("queue", "work-item")),
    ("orders", "Orders", ROLES, ("order",)),
    ("approvals", "Approvals", (FINANCE, ADMIN), ("approval", "delegation")),
    ("integration", "Integration", (PLANNER, ADMIN), ("integration",)),
    ("settings", "Settings", (ADMIN,), ("settings",)),
]


def nav(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    roles = roles_of(user)
    current = request.resolver_match.url_name if request.resolver_match else ""
    current = current or ""
    links = [
        (name, label, any(current.startswith(prefix) for prefix in prefixes))
        for name, label, allowed, prefixes in SECTIONS
        if not allowed or roles & set(allowed)
    ]
    return {
        "nav": links,
        "role_labels": [ROLE_LABELS[r] for r in ROLES if r in roles],
        "admin_site": ADMIN in roles and user.is_staff,
    }
