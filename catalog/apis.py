"""Thin API views: validate input, call one service or selector, serialize the output."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import filters, generics, status
from rest_framework.authtoken.models import Token
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors, services
from catalog.filters import TrackFilter
from catalog.permissions import IsStaffOrReadOnly
from catalog.rendering.audio import CONTENT_TYPE as AUDIO_CONTENT_TYPE
from catalog.serializers import (
    AccountSerializer,
    AudioPendingSerializer,
    RatingInputSerializer,
    RatingSerializer,
    RegisterSerializer,
    TokenInputSerializer,
    TokenSerializer,
    TrackSerializer,
    TrackUpdateSerializer,
    TrackUploadSerializer,
)
from config.api import JSONParser, ScopedThrottle
from config.errors import ApplicationError, NotFoundError, ServiceUnavailableError
from config.http import FileContentNegotiation, ranged_file_response

ERRORS = {400: OpenApiResponse(description="Bad input: {error: {status, code, message, fields?}}")}


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "auth"

    @extend_schema(request=RegisterSerializer, responses={201: AccountSerializer, 409: None, **ERRORS})
    def post(self, request):
        data = _validated(RegisterSerializer, request.data)
        user, token = services.user_register(**data)
        body = AccountSerializer(
            {"id": user.pk, "username": user.username, "email": user.email, "is_staff": user.is_staff, "token": token}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "auth"

    @extend_schema(request=TokenInputSerializer, responses={200: TokenSerializer, **ERRORS})
    def post(self, request):
        data = _validated(TokenInputSerializer, request.data)
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise ApplicationError("Unknown username or wrong password.", code="bad_credentials")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=AccountSerializer)
    def get(self, request):
        user = request.user
        return Response(
            AccountSerializer(
                {"id": user.pk, "username": user.username, "email": user.email, "is_staff": user.is_staff}
            ).data
        )


class TrackListApi(generics.ListAPIView):
    """Browse the catalog (anyone); upload a MIDI file (staff)."""

    serializer_class = TrackSerializer
    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [MultiPartParser, FormParser]
    filterset_class = TrackFilter
    search_fields = ["title", "composer", "collection", "region"]
    ordering_fields = [
        "title",
        "created_at",
        "duration_seconds",
        "note_count",
        "tempo_bpm",
        "rating_count",
        "rating_average",
    ]
    filter_backends = [*generics.ListAPIView.filter_backends]

    def get_queryset(self):
        return selectors.track_list()

    @extend_schema(
        request={"multipart/form-data": TrackUploadSerializer},
        responses={201: TrackSerializer, 200: TrackSerializer, **ERRORS},
    )
    def post(self, request):
        data = _validated(TrackUploadSerializer, request.data)
        upload = data.pop("file")
        services.midi_size_check(size=upload.size)  # before reading it into memory
        title = data.pop("title", "") or upload.name.rsplit(".", 1)[0]
        result = services.track_ingest(
            midi_bytes=upload.read(), title=title, created_by=request.user, source=f"upload:{upload.name}"[:300], **data
        )
        track = selectors.track_get(track_id=result.track.pk)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(TrackSerializer(track, context={"request": request}).data, status=code)


class TrackDetailApi(APIView):
    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(responses={200: TrackSerializer, 404: None})
    def get(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        return Response(TrackSerializer(track, context={"request": request}).data)

    @extend_schema(request=TrackUpdateSerializer, responses={200: TrackSerializer, 404: None, **ERRORS})
    def patch(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        data = _validated(TrackUpdateSerializer, request.data)
        services.track_update(track=track, **data)
        return Response(TrackSerializer(selectors.track_get(track_id=track_id), context={"request": request}).data)

    @extend_schema(responses={204: None, 404: None})
    def delete(self, request, track_id: int):
        services.track_delete(track=selectors.track_get(track_id=track_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TrackMidiApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "audio/midi"): OpenApiTypes.BINARY, 404: None})
    def get(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        try:
            handle = track.midi_file.open("rb")
        except FileNotFoundError:  # a staff delete removed it after the lookup
            raise NotFoundError("No such track (it has just been deleted).", code="not_found") from None
        return FileResponse(
            handle,
            content_type="audio/midi",
            as_attachment=True,
            filename=f"{_slug(track.title)}-{track.pk}.mid",
        )


class TrackRatingApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: RatingSerializer, 404: None})
    def get(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        rating = selectors.rating_get(user=request.user, track=track)
        if rating is None:
            raise ApplicationError("You have not rated this track.", code="not_rated") from None
        return Response(RatingSerializer(rating).data)

    @extend_schema(request=RatingInputSerializer, responses={200: RatingSerializer, 201: RatingSerializer, **ERRORS})
    def put(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        data = _validated(RatingInputSerializer, request.data)
        rating, created = services.rating_set(user=request.user, track=track, score=data["score"])
        return Response(RatingSerializer(rating).data, status=201 if created else 200)

    @extend_schema(responses={204: None, 404: None, **ERRORS})
    def delete(self, request, track_id: int):
        services.rating_delete(user=request.user, track=selectors.track_get(track_id=track_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyRatingsApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = RatingSerializer
    filter_backends = [filters.OrderingFilter]
    ordering_fields = ["updated_at", "score"]

    def get_queryset(self):
        return selectors.rating_list_for_user(user=self.request.user)


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _slug(title: str) -> str:
    from django.utils.text import slugify

    return slugify(title)[:60] or "track"


class TrackAudioApi(APIView):
    """The track rendered to Ogg Vorbis; seekable (single byte ranges). 202 + Retry-After while rendering."""

    permission_classes = [AllowAny]
    content_negotiation_class = FileContentNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "Range",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="One byte range, e.g. `bytes=0-` or `bytes=1000-1999`.",
            )
        ],
        responses={
            (200, "audio/ogg"): OpenApiTypes.BINARY,
            (206, "audio/ogg"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            202: OpenApiResponse(AudioPendingSerializer, description="Rendering; retry after `Retry-After` seconds."),
            404: OpenApiResponse(description="No such track."),
            416: OpenApiResponse(description="The range starts past the end of the file."),
            503: OpenApiResponse(description="The audio could not be rendered; the message says why."),
        },
    )
    def get(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        media = services.track_audio_request(track=track)
        if media.audio_is_current:
            return ranged_file_response(
                request,
                media.audio_file,
                content_type=AUDIO_CONTENT_TYPE,
                etag=f"{media.audio_source_hash[:32]}-audio",
                filename=f"{_slug(track.title)}-{track.pk}.ogg",
            )
        if media.audio_status == media.AudioStatus.FAILED:
            raise ServiceUnavailableError(
                f"The audio of this track could not be rendered: {media.audio_error}", code="audio_render_failed"
            )
        retry_after = settings.REFRAIN_AUDIO_RETRY_AFTER
        body = AudioPendingSerializer(
            {
                "status": media.audio_status,
                "retry_after": retry_after,
                "message": f"The audio is being rendered; try again in {retry_after} s.",
            }
        )
        return Response(body.data, status=status.HTTP_202_ACCEPTED, headers={"Retry-After": str(retry_after)})


class TrackPianorollApi(APIView):
    """The track's notes over time as a PNG (1200x400; `?size=thumb` gives 240x48). Drawn once, then cached."""

    permission_classes = [AllowAny]
    content_negotiation_class = FileContentNegotiation

    @extend_schema(
        operation_id="v1_tracks_pianoroll_retrieve",
        parameters=[OpenApiParameter("size", OpenApiTypes.STR, enum=["full", "thumb"], required=False)],
        responses={(200, "image/png"): OpenApiTypes.BINARY, 404: OpenApiResponse(description="No such track.")},
    )
    def get(self, request, track_id: int):
        track = selectors.track_get(track_id=track_id)
        size = request.query_params.get("size", "full")
        if size not in ("full", "thumb"):
            raise ApplicationError("size must be 'full' or 'thumb'.", fields={"size": ["full or thumb"]})
        image = services.track_pianoroll_ensure(track=track, thumbnail=size == "thumb")
        return ranged_file_response(request, image, content_type="image/png", etag=f"{track.content_hash[:32]}-{size}")
