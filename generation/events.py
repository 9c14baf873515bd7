"""What generation announces. Higher apps (recommend) connect receivers in their AppConfig.ready()."""

from config.events import DomainEvent

# Another model version became the active one: the catalog's embeddings for it must be computed.
model_version_activated = DomainEvent("generation.model_version_activated", payload=("model_version_id",))
