import logging

from django.apps import AppConfig

from config.celery import worker_queues

logger = logging.getLogger(__name__)


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self):
        from celery.signals import celeryd_after_setup

        celeryd_after_setup.connect(
            check_audio_renderer_on_worker_start, weak=False, dispatch_uid="catalog.audio_renderer_check"
        )


def check_audio_renderer_on_worker_start(sender=None, instance=None, **kwargs) -> None:
    """A worker that takes audio renders refuses to start without fluidsynth, oggenc and the SoundFont.

    Otherwise every track would quietly end up "failed" (or worse, silent). Workers that consume only
    other queues (gpu) are not concerned. Celery logs and swallows ordinary exceptions from signal
    handlers, so the refusal is a SystemExit with the reason.
    """
    from django.conf import settings

    from catalog.rendering import AudioRenderError, check_audio_renderer

    if instance is not None:
        app = instance.app
        try:
            queue = app.amqp.router.route({}, "catalog.tasks.track_render_audio")["queue"].name
        except Exception:  # noqa: BLE001 - routing is configuration; fall back to the default queue
            queue = app.conf.task_default_queue
        consumed = worker_queues(app)
        if consumed and queue not in consumed:
            return
    try:
        check_audio_renderer(settings.REFRAIN_SOUNDFONT)
    except AudioRenderError as exc:
        logger.critical("This worker cannot render audio: %s", exc)
        raise SystemExit(f"Refrain worker refused to start: it cannot render audio. {exc}") from exc
