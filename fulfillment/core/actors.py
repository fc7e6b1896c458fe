from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class Actor:
    """Who did something: a person, or a named system such as ``wms`` or ``scheduler``."""

    user: AbstractBaseUser | None = None
    system: str = ""

    def __post_init__(self) -> None:
        if (self.user is None) == (not self.system):
            raise ValueError("an actor is either a user or a named system")

    @classmethod
    def of(cls, user: AbstractBaseUser) -> "Actor":
        return cls(user=user)

    @classmethod
    def named(cls, system: str) -> "Actor":
        return cls(system=system)

    @property
    def label(self) -> str:
        return self.user.get_username() if self.user is not None else self.system

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None
