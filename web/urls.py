from django.urls import path

from web import accounts, making, views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("browse/", views.browse, name="browse"),
    path("tracks/<int:track_id>/", views.track_page, name="track"),
    path("tracks/<int:track_id>/rating/", views.rate, name="rate"),
    path("tracks/<int:track_id>/player/", views.player, name="player"),
    path("taste/", views.taste, name="taste"),
    path("make/", making.make, name="make"),
    path("make/jobs/", making.jobs, name="jobs"),
    path("make/jobs/<int:job_id>/", making.job_page, name="job"),
    path("sign-up/", accounts.sign_up, name="sign-up"),
    path("sign-in/", accounts.sign_in, name="sign-in"),
    path("sign-out/", accounts.sign_out, name="sign-out"),
]
