"""Telling people: an in-app notification per user and item, and one email per
recipient, sent after the transaction that caused it commits.

Everything here works on batches, so that a sweep over thousands of items costs the
same few queries as one item.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import QuerySet

from fulfillment.core import clock
from fulfillment.core.models import Notification, Queue, WorkItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Note:
    user: AbstractBaseUser
    text: str
    item: WorkItem | None = None


def team_members(queue: Queue) -> QuerySet[AbstractBaseUser]:
    return get_user_model().objects.filter(groups=queue.team_id, is_active=True).order_by("pk")


def members_by_team(team_ids: Iterable[int]) -> dict[int, list[AbstractBaseUser]]:
    """The active members of several teams in one query."""
    memberships = (
        get_user_model()
        .groups.through.objects.filter(group_id__in=set(team_ids), user__is_active=True)
        .select_related("user")
        .order_by("user_id")
    )
    members: dict[int, list[AbstractBaseUser]] = defaultdict(list)
    for membership in memberships:
        members[membership.group_id].append(membership.user)
    return members


def notify(*, users: Iterable[AbstractBaseUser], text: str, item: WorkItem | None = None) -> int:
    return deliver([Note(user=user, text=text, item=item) for user in users])


def deliver(notes: Iterable[Note]) -> int:
    """Store the notes (one query) and email each recipient once, listing their notes.

    Call inside the caller's transaction: the emails go out only if it commits, and a
    failing mail server is logged, never undoes the notifications.
    """
    now = clock.now()
    rows, by_user = [], defaultdict(list)
    for note in notes:
        rows.append(Notification(user=note.user, item=note.item, text=note.text[:300], created_at=now))
        by_user[note.user.pk].append(note)
    if not rows:
        return 0
    Notification.objects.bulk_create(rows)
    messages = [_email(user_notes) for user_notes in by_user.values() if user_notes[0].user.email]
    if messages:
        transaction.on_commit(lambda: _send(messages), robust=True)
    return len(rows)


def _email(notes: list[Note]) -> EmailMessage:
    subject = notes[0].text if len(notes) == 1 else f"{len(notes)} work items need your attention"
    return EmailMessage(
        subject=f"[Fulfillment portal] {subject}"[:200],
        body="\n".join(f"- {note.text}" for note in notes) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notes[0].user.email],
    )


def _send(messages: list[EmailMessage]) -> None:
    sent = get_connection().send_messages(messages)
    logger.info("sent %s of %s notification emails", sent, len(messages))
