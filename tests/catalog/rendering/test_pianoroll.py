"""MIDI -> piano-roll PNG of a fixed size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from catalog.rendering import PIANOROLL_SIZE, THUMBNAIL_SIZE, render_pianoroll
from catalog.rendering.pianoroll import pitch_name
from tests.conftest import make_midi


def test_pitch_names():
    assert [pitch_name(p) for p in (21, 60, 61, 69, 70, 108)] == ["A0", "C4", "C♯4", "A4", "B♭4", "C8"]


def test_full_picture_and_thumbnail_decode_at_their_sizes(corpus_midi):
    for thumbnail, size in ((False, PIANOROLL_SIZE), (True, THUMBNAIL_SIZE)):
        image = Image.open(io.BytesIO(render_pianoroll(corpus_midi, thumbnail=thumbnail, title="A tune")))
        image.load()
        assert image.format == "PNG" and image.size == size
        # Not blank: the notes are drawn in a colour far from the white background.
        pixels = np.asarray(image.convert("RGB")).astype(int)
        assert ((pixels[..., 2] > 120) & (pixels[..., 0] < 90)).sum() > 50


def test_single_note_and_wide_range_melodies_draw():
    for midi in (make_midi([60]), make_midi([24, 100, 40, 90], step=1.0)):
        assert Image.open(io.BytesIO(render_pianoroll(midi))).size == PIANOROLL_SIZE
