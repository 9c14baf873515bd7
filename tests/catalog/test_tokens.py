"""An API token ends when its user's password changes; the client signs in again for a new one."""

import pytest
from django.test import Client

from tests.catalog.test_api import assert_error

pytestmark = pytest.mark.django_db


def test_a_password_change_ends_the_users_api_tokens(user, user_client):
    assert user_client.get("/api/v1/me/").status_code == 200
    user.set_password("a-new-long-passphrase-7")
    user.save()
    assert_error(user_client.get("/api/v1/me/"), 401)
    # the client gets a new token by signing in with the new password
    answer = Client().post(
        "/api/v1/auth/token/", {"username": user.username, "password": "a-new-long-passphrase-7"}, "application/json"
    )
    assert answer.status_code == 200
    fresh = Client(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
    assert fresh.get("/api/v1/me/").json()["username"] == user.username


def test_a_password_change_in_the_admin_ends_the_tokens(user, user_client, staff, django_user_model):
    staff.is_superuser = True
    staff.save()
    admin = Client()
    admin.force_login(staff)
    new = "another-long-passphrase-5"
    response = admin.post(f"/admin/catalog/user/{user.pk}/password/", {"password1": new, "password2": new})
    assert response.status_code == 302, response.content[:2000]
    assert_error(user_client.get("/api/v1/me/"), 401)


def test_signing_in_and_other_saves_keep_the_token(user, user_client):
    from rest_framework.authtoken.models import Token

    key = Token.objects.get(user=user).key
    answer = Client().post(
        "/api/v1/auth/token/", {"username": user.username, "password": "a-long-passphrase-1"}, "application/json"
    )
    assert answer.json()["token"] == key
    user.email = "listener@example.com"
    user.save()
    assert user_client.get("/api/v1/me/").status_code == 200
