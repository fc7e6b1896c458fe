"""The demo logins: one user per role, password ``demo``."""

from dataclasses import dataclass
from typing import TextIO

from django.contrib.auth.models import Group, User

from fulfillment.core import roles

DEMO_PASSWORD = "demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    first_name: str
    last_name: str

    @property
    def email(self) -> str:
        return f"{self.first_name}.{self.last_name}@portal.example".lower()


DEMO_USERS = (
    DemoUser("cs", roles.CUSTOMER_SERVICE, "Clara", "Schmidt"),
    DemoUser("planner", roles.PLANNER, "Piotr", "Nowak"),
    DemoUser("finance", roles.FINANCE, "Fiona", "Walsh"),
    DemoUser("admin", roles.ADMIN, "Arjun", "Mehta"),
)


def demo_users_ensure() -> dict[str, User]:
    """Create the demo users and their groups if missing; an existing user keeps its password."""
    users = {}
    for demo in DEMO_USERS:
        is_admin = demo.role == roles.ADMIN
        user, created = User.objects.get_or_create(
            username=demo.username,
            defaults={
                "first_name": demo.first_name,
                "last_name": demo.last_name,
                "email": demo.email,
                "is_staff": is_admin,
                "is_superuser": is_admin,
            },
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=demo.role)[0])
        users[demo.username] = user
    return users


def print_logins(stdout: TextIO) -> None:
    stdout.write("Demo logins (password for all: demo):\n")
    for demo in DEMO_USERS:
        stdout.write(
            f"  {demo.username:<8} / {DEMO_PASSWORD} / {demo.role:<16} {demo.first_name} {demo.last_name}\n"
        )
