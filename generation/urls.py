from django.urls import path

from generation import apis

urlpatterns = [
    path("generations/", apis.GenerationListApi.as_view(), name="generation-list"),
    path("generations/<int:job_id>/", apis.GenerationDetailApi.as_view(), name="generation-detail"),
]
