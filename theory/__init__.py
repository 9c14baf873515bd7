"""Music theory shared by the catalog (MIDI metadata) and the model (attributes): plain numpy, no
Django, no torch. The lowest layer: it imports nothing from the project."""
