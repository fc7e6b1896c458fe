from django.db import models

from fulfillment.core import clock


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(default=clock.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
