"""python manage.py create_demo_users: an admin and a listener for trying the platform locally."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from catalog.models import User

DEMO_ACCOUNTS = (
    # username, password, staff
    ("admin", "refrain-admin-demo", True),
    ("demo", "refrain-listener-demo", False),
)


class Command(BaseCommand):
    help = "Create (or reset) the demo admin and demo user and print their credentials and API tokens."

    def handle(self, *args, **options):
        if not settings.DEBUG and not getattr(settings, "ALLOW_DEMO_USERS", False):
            raise CommandError("Demo accounts with known passwords are for local settings only (DEBUG on).")
        for username, password, staff in DEMO_ACCOUNTS:
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = staff
            user.set_password(password)
            user.save()
            token, _ = Token.objects.get_or_create(user=user)
            role = "admin (staff)" if staff else "user"
            self.stdout.write(f"  {role:14} username={username}  password={password}  token={token.key}")
