from django.urls import path

from catalog import apis

urlpatterns = [
    path("auth/register/", apis.RegisterApi.as_view(), name="register"),
    path("auth/token/", apis.TokenApi.as_view(), name="token"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("me/ratings/", apis.MyRatingsApi.as_view(), name="my-ratings"),
    path("tracks/", apis.TrackListApi.as_view(), name="track-list"),
    path("tracks/<int:track_id>/", apis.TrackDetailApi.as_view(), name="track-detail"),
    path("tracks/<int:track_id>/midi/", apis.TrackMidiApi.as_view(), name="track-midi"),
    path("tracks/<int:track_id>/audio/", apis.TrackAudioApi.as_view(), name="track-audio"),
    path("tracks/<int:track_id>/pianoroll.png", apis.TrackPianorollApi.as_view(), name="track-pianoroll"),
    path("tracks/<int:track_id>/rating/", apis.TrackRatingApi.as_view(), name="track-rating"),
]
