"""The writers of the portal's own data around the work queues: saved views of a queue and
the read marks on a user's notifications."""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from fulfillment.core import clock, workqueue
from fulfillment.core.errors import InvalidInput, NotFound, PermissionDenied
from fulfillment.core.models import Notification, Queue
from portal.models import SavedView

NAME_MAX = SavedView._meta.get_field("name").max_length
QUERY_MAX = SavedView._meta.get_field("query").max_length


@transaction.atomic
def saved_view_save(
    *, owner: AbstractBaseUser, queue: Queue, name: str, query: str, shared: bool
) -> SavedView:
    """Save the filters ``query`` under ``name``; the owner's view of that name is replaced.

    ``query`` must already be the canonical query string of valid filters.
    """
    workqueue.access_queue(owner, queue)
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(
            f"Give the view a name of 1 to {NAME_MAX} characters.", fields={"name": ["Required."]}
        )
    if len(query) > QUERY_MAX:
        raise InvalidInput("These filters are too long to save.", fields={"query": ["Too long."]})
    view, _ = SavedView.objects.update_or_create(
        owner=owner, queue=queue, name=name, defaults={"query": query, "shared": shared}
    )
    return view


@transaction.atomic
def saved_view_delete(*, view_id: int, user: AbstractBaseUser) -> None:
    view = SavedView.objects.select_for_update().filter(pk=view_id).first()
    if view is None:
        raise NotFound(f"Saved view {view_id} does not exist.")
    if view.owner_id != user.pk:
        raise PermissionDenied("Only the person who saved a view may delete it.")
    view.delete()


def notifications_mark_read(*, user: AbstractBaseUser, ids: Iterable[int] | None = None) -> int:
    """Mark the user's unread notifications read (only those in ``ids`` when given)."""
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=list(ids))
    return qs.update(read_at=clock.now())
