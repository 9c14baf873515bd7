"""Generation jobs over the API: thin views over generation.services and selectors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import ScopedThrottle
from generation import selectors, services
from generation.serializers import GenerationJobSerializer, GenerationRequestSerializer


class GenerationListApi(generics.ListAPIView):
    """Your generation jobs (all of them for staff); POST asks for new melodies."""

    permission_classes = [IsAuthenticated]
    serializer_class = GenerationJobSerializer
    filter_backends: list = []

    def get_throttles(self):
        if self.request.method == "POST":
            self.throttle_scope = "generation"
            return [*super().get_throttles(), ScopedThrottle()]
        return super().get_throttles()

    def get_queryset(self):
        return selectors.generation_job_list(user=self.request.user)

    @extend_schema(
        request=GenerationRequestSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Any unique string (at most 128 characters, e.g. a UUID). A retry with the same key "
                "returns the job of the first request instead of making another.",
            )
        ],
        responses={
            202: GenerationJobSerializer,
            400: OpenApiResponse(description="bad parameters"),
            409: OpenApiResponse(description="the Idempotency-Key was used for a different request"),
        },
    )
    def post(self, request):
        serializer = GenerationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = dict(serializer.validated_data)
        kind = params.pop("kind")
        created = services.generation_job_request(
            owner=request.user,
            kind=kind,
            params=params,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        job = created.job
        body = GenerationJobSerializer(
            selectors.generation_job_get(user=request.user, job_id=job.pk), context={"request": request}
        ).data
        headers = {"Location": f"/api/v1/generations/{job.pk}/"}
        if not created.created:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


class GenerationDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: GenerationJobSerializer, 404: OpenApiResponse(description="not yours or none")})
    def get(self, request, job_id: int):
        job = selectors.generation_job_get(user=request.user, job_id=job_id)
        return Response(GenerationJobSerializer(job, context={"request": request}).data)
