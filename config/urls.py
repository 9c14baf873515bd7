from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz

api_v1 = (
    [path("", include("catalog.urls")), path("", include("generation.urls")), path("", include("recommend.urls"))],
    "api",
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("web.urls")),  # the listening pages
]

# Unknown URLs and uncaught errors: the API's error shape under /api/ (and for JSON clients), HTML elsewhere.
handler404 = "config.failsafe.not_found"
handler500 = "config.failsafe.server_error"

admin.site.site_header = "Refrain catalog"
admin.site.site_title = "Refrain"

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
