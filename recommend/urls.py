from django.urls import path

from recommend import apis

urlpatterns = [
    path("tracks/<int:track_id>/similar/", apis.TrackSimilarApi.as_view(), name="track-similar"),
    path("feed/", apis.FeedApi.as_view(), name="feed"),
]
