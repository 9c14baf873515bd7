from django.apps import AppConfig


class WebConfig(AppConfig):
    """The listening room: server-rendered pages (Django templates + htmx) over the same services
    and selectors as the API. Top of the layers: it imports the apps, none imports it."""

    name = "web"
    verbose_name = "Listening room (web pages)"
