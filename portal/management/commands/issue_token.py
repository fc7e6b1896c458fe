"""``manage.py issue_token <username> [--scope read] [--scope write] [--scope admin] [--name …]``.

Creates an API token for the user and prints its key as the last line of the output:
the key is shown this once (only its hash is stored). Without ``--scope`` the token
may only read.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fulfillment.core.errors import InvalidInput
from portal.api.auth import api_token_issue
from portal.api.models import Scope


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (last line; shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--scope",
            action="append",
            choices=Scope.values,
            dest="scopes",
            help="read (GET), write (POSTs that change things), admin (admin endpoints); repeatable.",
        )
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'ERP push'.")

    def handle(self, *args: Any, username: str, scopes: list[str] | None, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user '{username}'.")
        if not user.is_active:
            raise CommandError(f"User '{username}' is inactive.")
        try:
            token, key = api_token_issue(user=user, scopes=scopes or [Scope.READ], name=name)
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Token {token.prefix}… for {username}, scopes {', '.join(token.scopes)}. "
            "Send it as 'Authorization: Token <key>'; this is the only time the key is shown:"
        )
        self.stdout.write(key)
