"""The classifier two-sample test, the structure statistics and the content split, on fixture data."""

from __future__ import annotations

import numpy as np
import pytest

from generation.vae.dedup import content_groups, split_groups
from generation.vae.representation import FIRST_NOTE, OFF, extract_melody
from generation.vae.structure import degenerate, ends_on_tonic, phrase_end_long, repeat_share, self_similarity
from generation.vae.two_sample import feature_matrix, real_vs_real, two_sample_auc, wide_feature_matrix

from .conftest import write_melody

MAJOR = [0, 2, 4, 5, 7, 9, 11, 12, 14]
RHYTHMS = [[4, 4, 4, 4], [2, 2, 4, 8], [4, 2, 2, 8], [6, 2, 4, 4], [8, 4, 4]]


def _notes_to_tokens(notes: list[tuple[int, int]]) -> np.ndarray:
    out = []
    for pitch, dur in notes:
        out += [FIRST_NOTE + pitch - 21] + [0] * (dur - 1)
    return np.array(out + [OFF], dtype=np.int64)


def folk_like(rng: np.random.Generator) -> list[tuple[int, int]]:
    """8 chunks of 32 steps in an AABA'-like form, stepwise in a major scale, ending long on the tonic."""
    tonic = int(rng.integers(57, 67))

    def phrase() -> list[tuple[int, int]]:
        notes, deg = [], int(rng.integers(0, 5))
        for _ in range(2):  # two bars
            for d in RHYTHMS[int(rng.integers(len(RHYTHMS)))]:
                deg = int(np.clip(deg + rng.choice([-2, -1, 1, 1, 2, 0]), 0, len(MAJOR) - 1))
                notes.append((tonic + MAJOR[deg], d))
        return notes

    a, b, c = phrase(), phrase(), phrase()
    end = phrase()[:-1] + [(tonic, 8)]
    return a + b + a + end + c + c + a + end


def shuffled(notes: list[tuple[int, int]], rng: np.random.Generator) -> list[tuple[int, int]]:
    pitches = [p for p, _ in notes]
    rng.shuffle(pitches)
    return [(p, d) for p, (_, d) in zip(pitches, notes)]


@pytest.fixture(scope="module", params=["features", "wide_features"])
def fixture_sets(request):
    rng = np.random.default_rng(0)
    real = [folk_like(rng) for _ in range(240)]
    fake = [shuffled(n, rng) for n in [folk_like(rng) for _ in range(120)]]

    def to_x(tunes):
        tokens = [_notes_to_tokens(n)[:256] for n in tunes]
        if request.param == "wide_features":
            return wide_feature_matrix(tokens, [32] * len(tunes), [16] * len(tunes))
        return feature_matrix(tokens, [32] * len(tunes))

    return to_x(real), to_x(fake)


def test_two_sample_test_separates_shuffled_notes_from_real(fixture_sets):
    real, fake = fixture_sets
    res = two_sample_auc(real[:120], fake, np.arange(120), bootstrap=100)
    assert res["auc"] > 0.9
    assert res["ci95"][0] <= res["auc"] <= res["ci95"][1]


def test_two_sample_test_real_against_real_is_near_chance(fixture_sets):
    real, _ = fixture_sets
    res = real_vs_real(real, np.arange(len(real)), bootstrap=100)
    assert 0.3 < res["auc"] < 0.7


def test_repeat_share_counts_exact_and_transposed_repeats():
    rng = np.random.default_rng(1)
    notes = folk_like(rng)
    toks = _notes_to_tokens(notes)[:256]
    assert repeat_share(toks, 32) == pytest.approx(4 / 7)  # a b a end c c a end: 4 of chunks 2..8 repeat
    up = toks.copy()
    up[64:96] = np.where(up[64:96] >= FIRST_NOTE, up[64:96] + 2, up[64:96])  # 3rd chunk transposed
    assert repeat_share(up, 32) == pytest.approx(3 / 7)
    assert repeat_share(up, 32, transposed=True) == pytest.approx(4 / 7)


def test_self_similarity_reads_how_far_back_a_tune_answers_itself():
    a, b = np.full(32, FIRST_NOTE + 10), np.full(32, FIRST_NOTE + 20)
    half = a.copy()
    half[16:] = b[16:]
    abab = np.concatenate([a, b, a, b])
    assert self_similarity(abab, 32) == {1: 0.0, 2: 1.0}  # no lag of 4 or 8 in four chunks
    aabb_half = np.concatenate([a, a, b, b, half])
    assert self_similarity(aabb_half, 32) == pytest.approx({1: (1 + 0 + 1 + 0.5) / 4, 2: (0 + 0 + 0.5) / 3, 4: 0.5})


def test_degenerate_flags_and_phrase_endings():
    held = _notes_to_tokens([(60, 4), (62, 40), (64, 4)])
    assert degenerate(held, 16)["held_2_bars"] and not degenerate(held, 16)["span_over_3_octaves"]
    wide = _notes_to_tokens([(40, 4), (80, 4)])
    assert degenerate(wide, 16)["span_over_3_octaves"]
    silent = np.zeros(100, dtype=np.int64)
    silent[0], silent[2] = FIRST_NOTE + 40, OFF
    assert degenerate(silent, 16)["silence_4_bars"]
    # 4 bars of quarters then a half note ending bar 4: one 4-bar boundary, long
    phrase = _notes_to_tokens([(60, 4)] * 14 + [(62, 8)])[:64]
    assert phrase_end_long(phrase, 16, 4) == 1.0
    short = _notes_to_tokens([(60, 4)] * 15 + [(62, 1), (64, 1), (65, 1), (67, 1)])[:64]
    assert phrase_end_long(short, 16, 4) == 0.0


def test_ends_on_tonic_reads_the_key_from_the_scale_that_sounds_longest():
    g_major = [(67, 4), (71, 4), (74, 4), (72, 2), (66, 2), (69, 4)]  # F sharp: G major
    assert ends_on_tonic(_notes_to_tokens(g_major + [(67, 8)]))
    assert ends_on_tonic(_notes_to_tokens(g_major + [(64, 8)]))  # E: its relative minor's tonic
    assert not ends_on_tonic(_notes_to_tokens(g_major + [(60, 8)]))  # C is in the scale, not a tonic
    assert not ends_on_tonic(np.zeros(16, dtype=np.int64))


def test_content_split_keeps_transposed_copies_and_variants_together(tmp_path):
    rng = np.random.default_rng(2)
    base = [p for p, _ in folk_like(rng)]
    other = [p for p, _ in folk_like(np.random.default_rng(3))]
    variant = base[:]
    variant[-3] += 1  # one note changed near the end
    mels = {
        "a.mid": extract_melody(write_melody(tmp_path / "a.mid", base)),
        "a_up.mid": extract_melody(write_melody(tmp_path / "b.mid", [p + 5 for p in base])),
        "a_var.mid": extract_melody(write_melody(tmp_path / "c.mid", variant)),
        "z.mid": extract_melody(write_melody(tmp_path / "d.mid", other)),
    }
    groups = content_groups(mels)
    assert sorted(map(sorted, groups)) == [["a.mid", "a_up.mid", "a_var.mid"], ["z.mid"]]
    split = split_groups(groups, seed=0)
    where = {n: s for s, names in split.items() for n in names}
    assert where["a.mid"] == where["a_up.mid"] == where["a_var.mid"]
