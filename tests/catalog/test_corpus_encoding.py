"""The corpus's ABC files are UTF-8: titles read as written, and rows garbled before are mended."""

import importlib

import pytest

from catalog import corpus

repair = importlib.import_module("catalog.migrations.0003_repair_mojibake_titles")


def test_titles_of_the_utf8_corpus_files_read_correctly():
    jobs = [job for job in corpus._abc_jobs("essen") if job.filename == "irl.abc"]
    titles = [corpus._abc_headers(job.text).get("T", "") for job in jobs]
    assert "A Bhruinnillin Bhéasach, S. 36" in titles
    tune = corpus.read_abc_tune(next(job for job in jobs if "Bhéasach" in job.text))
    assert tune.title == "A Bhruinnillin Bhéasach, S. 36"


def test_no_corpus_header_is_garbled():
    garbled = [
        (job.source, value)
        for collection in corpus.COLLECTIONS
        if collection != "bach_chorales"
        for job in corpus._abc_jobs(collection)
        for value in (corpus._abc_headers(job.text).get("T", ""), corpus._abc_headers(job.text).get("C", ""))
        if repair.repair_mojibake(value) != value
    ]
    assert garbled == []


def test_bytes_that_are_not_utf8_are_read_as_latin1(tmp_path):
    path = tmp_path / "old.abc"
    path.write_bytes("X:1\nT:Caf\u00e9 \u2019s\n".encode() + "T:Br\u00e9zilienne\n".encode("latin-1"))
    assert corpus.read_abc_text(path) == "X:1\nT:Caf\u00e9 \u2019s\nT:Br\u00e9zilienne\n"


@pytest.mark.parametrize(
    "stored, mended",
    [
        ("A Bhruinnillin BhÃ©asach, S. 36", "A Bhruinnillin Bhéasach, S. 36"),
        ("Ã\x9altwa Ã\xa0 Ã\x9f", "Últwa à ß"),
        ("Jig â\x80\x99s", "Jig \u2019s"),
        ("A Bhruinnillin Bhéasach, S. 36", "A Bhruinnillin Bhéasach, S. 36"),  # already right
        ("Plain ASCII", "Plain ASCII"),
        ("中国民歌", "中国民歌"),  # not latin-1 at all
        ("Café Ä", "Café Ä"),
    ],
)
def test_repair_mends_garbled_text_and_leaves_correct_text_alone(stored, mended):
    assert repair.repair_mojibake(stored) == mended
    assert repair.repair_mojibake(mended) == mended  # idempotent


@pytest.mark.django_db
def test_migration_mends_stored_rows(track_factory):
    from django.apps import apps

    from catalog.models import Track

    garbled = track_factory(title="A Bhruinnillin BhÃ©asach, S. 36", composer="SeÃ¡n")
    right = track_factory(title="Ständchen")
    for _ in range(2):
        repair.repair_tracks(apps, None)
    garbled.refresh_from_db()
    right.refresh_from_db()
    assert (garbled.title, garbled.composer) == ("A Bhruinnillin Bhéasach, S. 36", "Seán")
    assert right.title == "Ständchen"
    assert Track.objects.count() == 2
