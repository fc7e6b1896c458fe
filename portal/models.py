from django.conf import settings
from django.db import models

from fulfillment.core import clock
from fulfillment.core.models import Queue


class SavedView(models.Model):
    """A named set of queue-page filters; shared ones appear for everyone who works the queue."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=1000, blank=True, help_text="The filters, as a URL query string.")
    shared = models.BooleanField(default=False, help_text="Show it to the queue's whole team.")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "queue", "name"], name="savedview_one_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name
