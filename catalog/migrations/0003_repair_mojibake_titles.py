"""Mend titles and composers that the corpus import garbled: its ABC files are UTF-8 and were read as
latin-1, so 'Bhéasach' was stored as 'BhÃ©asach' (432 tracks of the full corpus). Idempotent."""

from django.db import migrations


def repair_mojibake(text: str) -> str:
    """UTF-8 bytes that were decoded as latin-1, decoded again as UTF-8; any other text unchanged.

    A correct non-ASCII text almost never survives the round trip (its latin-1 bytes are not valid
    UTF-8: 'é' is a lone 0xE9), so a repaired text is left alone on a second pass.
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def repair_tracks(apps, schema_editor):
    Track = apps.get_model("catalog", "Track")
    changed = []
    for track in Track.objects.only("id", "title", "composer").iterator(chunk_size=2000):
        title, composer = repair_mojibake(track.title), repair_mojibake(track.composer)
        if (title, composer) != (track.title, track.composer):
            track.title, track.composer = title, composer
            changed.append(track)
    Track.objects.bulk_update(changed, ["title", "composer"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_track_media")]

    operations = [migrations.RunPython(repair_tracks, migrations.RunPython.noop, elidable=True)]
