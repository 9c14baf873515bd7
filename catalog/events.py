"""What the catalog announces. Higher apps (recommend) connect receivers in their AppConfig.ready()."""

from config.events import DomainEvent

# Tracks were stored and want their derived state (embeddings): sent once per write, with every
# track of that write, so a batch of generated melodies is one message, not one per track.
tracks_created = DomainEvent("catalog.tracks_created", payload=("track_ids",))

# Tracks were deleted: derived state (index entries) must go too.
tracks_deleted = DomainEvent("catalog.tracks_deleted", payload=("track_ids",))
