"""manage.py evaluate_recommender: same-collection precision@k for latent, pitch-class and random features."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommend.management.commands.evaluate_recommender import chance_precision, precision_at_k

pytestmark = pytest.mark.django_db


def test_precision_at_k_and_chance():
    labels = np.asarray(["a", "a", "a", "b", "b", "b"])
    clustered = np.asarray([[1, 0], [1, 0.1], [1, -0.1], [0, 1], [0.1, 1], [-0.1, 1]], dtype=np.float32)
    assert precision_at_k(clustered, labels, 2) == 1.0
    assert precision_at_k(-clustered[[0, 3, 1, 4, 2, 5]], labels, 1) < 1.0
    assert chance_precision(labels) == pytest.approx(2 / 5)


def test_command_reports_every_representation(model_version, track_factory, put_embeddings, tmp_path):
    rng = np.random.default_rng(1)
    vectors = {}
    for i in range(8):
        vectors[track_factory(collection="jigs")] = np.r_[1, 0, 0.1 * rng.standard_normal(14)]
        vectors[track_factory(collection="chorales")] = np.r_[0, 1, 0.1 * rng.standard_normal(14)]
    put_embeddings(model_version, vectors)
    out = StringIO()
    call_command("evaluate_recommender", "--k", "3", "--json", str(tmp_path / "eval.json"), stdout=out)
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["tracks"] == 16 and result["per_label"] == {"chorales": 8, "jigs": 8}
    assert result["precision_at_k"]["latent"] == 1.0
    assert 0 <= result["precision_at_k"]["pitch_class"] <= 1 and 0 <= result["precision_at_k"]["random"] <= 1
    assert result["chance"] == pytest.approx(7 / 15, abs=1e-4)
    assert "latent" in out.getvalue() and "pitch_class" in out.getvalue()
    # simulated users who like jigs get jigs (the clusters are clean): 2 values x 5 users
    assert result["feed"]["users"] == 10
    assert result["feed"]["precision_at_k"] == 1.0 and result["feed"]["chance"] == 0.5
    from catalog.models import Rating, User

    assert not Rating.objects.exists() and not User.objects.filter(username__startswith="evaluate-").exists()


def test_command_needs_embeddings(model_version, track_factory):
    track_factory(collection="x")
    with pytest.raises(CommandError, match="embed_catalog"):
        call_command("evaluate_recommender")
