from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "fulfillment.core"
    label = "core"
    verbose_name = "Core"
