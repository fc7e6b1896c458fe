"""The roles of DESIGN.md §2, as Django groups, and the one place that asks who may what."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

CUSTOMER_SERVICE = "customer_service"
PLANNER = "planner"
FINANCE = "finance"
ADMIN = "admin"
ROLES = (CUSTOMER_SERVICE, PLANNER, FINANCE, ADMIN)


def roles_of(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._portal_roles = cached
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))
