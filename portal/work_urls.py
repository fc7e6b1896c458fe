from django.urls import path

from portal import work

urlpatterns = [
    path("queues/", work.queues, name="queues"),
    path("queues/<slug:slug>/", work.queue_page, name="queue"),
    path("queues/<slug:slug>/claim-next/", work.queue_claim_next, name="queue-claim-next"),
    path("queues/<slug:slug>/bulk/", work.queue_bulk, name="queue-bulk"),
    path("queues/<slug:slug>/export.csv", work.queue_export, name="queue-export"),
    path("queues/<slug:slug>/views/", work.saved_view_save, name="queue-view-save"),
    path("queues/<slug:slug>/views/<int:view_id>/delete/", work.saved_view_delete, name="queue-view-delete"),
    path("my-work/", work.my_work, name="my-work"),
    path("my-work/notifications/read/", work.notifications_read, name="notifications-read"),
    path("work-items/<int:pk>/", work.work_item, name="work-item"),
    path("work-items/<int:pk>/<slug:action>/", work.work_item_action, name="work-item-action"),
]
