"""The structure the code promises: plain-Python modules load no framework, one key finder."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "module", ["catalog.midi", "generation.vae.attributes", "generation.vae.model", "recommend.index", "theory.keys"]
)
def test_plain_modules_load_neither_django_nor_celery(module):
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('django', 'celery', 'rest_framework', 'kombu') if m in sys.modules)\n"
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def _histogram(pitch_classes, weights=None):
    hist = np.zeros(12)
    for pc, w in zip(pitch_classes, weights or [1] * len(pitch_classes)):
        hist[pc] += w
    return hist


def test_one_key_finder_serves_the_catalog_and_the_model():
    from catalog import midi
    from generation.vae import attributes
    from theory import keys

    c_major = _histogram([0, 2, 4, 5, 7, 9, 11, 0, 4, 7], [3, 1, 2, 1, 3, 1, 1, 2, 2, 2])
    a_minor = _histogram([9, 11, 0, 2, 4, 5, 7, 9, 0, 4], [3, 1, 2, 1, 2, 1, 1, 3, 2, 2])
    assert keys.estimate_key(c_major) == "C major"
    assert keys.estimate_key(a_minor) == "A minor"
    assert keys.estimate_key(np.zeros(12)) == ""
    assert keys.major_minor_score(c_major) > 0 > keys.major_minor_score(a_minor)
    # Neither app keeps a copy of the profiles: both reach the one in theory.keys.
    assert midi.estimate_key_from_histogram is keys.estimate_key
    assert attributes.major_minor_score is keys.major_minor_score
    assert not hasattr(midi, "_MAJOR_PROFILE") and not hasattr(attributes, "_MAJOR")
