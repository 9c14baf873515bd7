from django.apps import AppConfig


class RecommendConfig(AppConfig):
    name = "recommend"
    verbose_name = "Recommendation"

    def ready(self) -> None:
        from catalog import events as catalog_events
        from generation import events as generation_events
        from recommend import receivers

        catalog_events.tracks_created.connect(receivers.embed_created_tracks, dispatch_uid="recommend.embed")
        catalog_events.tracks_deleted.connect(receivers.unindex_deleted_tracks, dispatch_uid="recommend.unindex")
        generation_events.model_version_activated.connect(
            receivers.reembed_for_activated_version, dispatch_uid="recommend.reembed"
        )
