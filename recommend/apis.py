"""Thin API views over recommend.similar and recommend.feeds: similar tracks and the feeds. No model inference here."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.selectors import track_get, track_list
from catalog.serializers import TrackSerializer
from config.api import Pagination
from recommend import feeds, services, similar
from recommend.serializers import (
    FeedPageSerializer,
    FeedQuerySerializer,
    SimilarQuerySerializer,
    SimilarSerializer,
)


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TrackSimilarApi(APIView):
    """The tracks nearest this one in the active model's latent space (cosine), itself excluded."""

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("k", int, required=False, description="How many (1..100, default 10).")],
        responses={
            200: SimilarSerializer,
            404: OpenApiResponse(description="No such track."),
            409: OpenApiResponse(description="The track has no embedding yet (or no index is built)."),
            503: OpenApiResponse(description="No model version is active."),
        },
    )
    def get(self, request, track_id: int):
        k = _validated(SimilarQuerySerializer, request.query_params)["k"]
        track = track_get(track_id=track_id)
        version, results = similar.track_similar(track=track, k=k)
        # One serializer for the whole list: a ModelSerializer builds its fields once per instance,
        # which cost more than the search itself when done per track (bench/results/feed_cpu.json).
        serialized = TrackSerializer([t for t, _ in results], many=True, context={"request": request}).data
        return Response(
            {
                "track_id": track.pk,
                "model_version": version.pk,
                "results": [{"score": round(score, 6), "track": data} for (_, score), data in zip(results, serialized)],
            }
        )


class FeedApi(APIView):
    """Your feed: `recommended` (catalog tracks near your taste), `generated` (melodies the model
    composed near it) or `mixed`. Paginated; each item says why it is there."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=["recommended", "generated", "mixed"], required=False),
            OpenApiParameter("page", int, required=False),
            OpenApiParameter("page_size", int, required=False),
        ],
        responses={
            200: FeedPageSerializer,
            400: OpenApiResponse(description="Unknown kind."),
            401: OpenApiResponse(description="Not signed in."),
        },
    )
    def get(self, request):
        kind = _validated(FeedQuerySerializer, request.query_params)["kind"]
        items = feeds.feed(user=request.user, kind=kind)
        if kind != "recommended":
            services.feed_top_up_enqueue(user=request.user)  # never waits on a generation
        paginator = Pagination()
        page = paginator.paginate_queryset(items, request, view=self)
        tracks = {t.pk: t for t in track_list().filter(pk__in=[item.track_id for item in page])}
        shown = [item for item in page if item.track_id in tracks]
        # One serializer for the page, not one per item (see TrackSimilarApi).
        serialized = TrackSerializer(
            [tracks[item.track_id] for item in shown], many=True, context={"request": request}
        ).data
        body = [
            {"score": round(item.score, 6), "reason": item.reason, "source": item.source, "track": data}
            for item, data in zip(shown, serialized)
        ]
        return paginator.get_paginated_response(body)
