from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generation.vae.checkpoint import CheckpointError, load_model, save_checkpoint
from generation.vae.config import MEL_TINY, ModelConfig
from generation.vae.data import build_splits, transpose_batch
from generation.vae.model import MusicVAE, free_bits_kl, kl_divergence, vae_loss
from generation.vae.representation import FIRST_NOTE, MelodyError, tokens_to_midi_bytes
from generation.vae.sample import MelodyVAE, slerp
from generation.vae.train import evaluate_tf, train_step

torch.set_num_threads(1)


def test_kl_of_standard_normal_is_zero_and_matches_closed_form():
    assert kl_divergence(torch.zeros(2, 8), torch.ones(2, 8)).tolist() == [0.0, 0.0]
    mu, sigma = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.5]])
    expected = 0.5 * (1.0) + 0.5 * (0.25 - 1 - 2 * math.log(0.5))
    assert kl_divergence(mu, sigma).item() == pytest.approx(expected)


def test_free_bits_only_penalizes_kl_above_the_allowance():
    kl = torch.tensor([10.0, 48.0, 60.0])
    assert free_bits_kl(kl, 48.0).tolist() == [0.0, 0.0, 12.0]
    x = torch.zeros(3, 4, dtype=torch.long)
    logits = torch.zeros(3, 4, 90)
    mu = torch.zeros(3, 2)
    loss_free = vae_loss(logits, x, mu + 100, torch.ones(3, 2), beta=0.5, free_bits=1e9)["loss"]
    loss_none = vae_loss(logits, x, mu, torch.ones(3, 2), beta=0.5, free_bits=0.0)["loss"]
    assert loss_free.item() == pytest.approx(loss_none.item())  # KL entirely inside the free bits
    assert loss_none.item() == pytest.approx(4 * math.log(90), rel=1e-5)


def _melodies(n: int, length: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = np.zeros(length, dtype=np.int64)
        row[::2] = rng.integers(FIRST_NOTE + 30, FIRST_NOTE + 50, length // 2)
        rows.append(row)
    return torch.from_numpy(np.stack(rows))


def test_tiny_model_overfits_a_handful_of_melodies():
    torch.manual_seed(0)
    cfg = MEL_TINY
    model = MusicVAE(cfg)
    x = _melodies(4, cfg.seq_len)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for step in range(300):
        m = train_step(model, x, cfg, step, torch.device("cpu"))
        opt.zero_grad()
        m["loss"].backward()
        opt.step()
        if step % 25 == 0 and evaluate_tf(model, x, torch.device("cpu"))["accuracy"] == 1.0:
            break
    assert evaluate_tf(model, x, torch.device("cpu"))["accuracy"] == 1.0


def test_hierarchical_decoder_shapes_and_generation():
    cfg = ModelConfig(
        name="h",
        seq_len=64,
        bar_len=16,
        hierarchical=True,
        embed_dim=8,
        enc_hidden=16,
        z_dim=8,
        dec_hidden=16,
        dec_layers=1,
        conductor_hidden=16,
        conductor_dim=8,
    )
    model = MusicVAE(cfg).eval()
    x = _melodies(3, 64)
    logits, mu, sigma = model(x)
    assert logits.shape == (3, 64, 90) and mu.shape == sigma.shape == (3, 8)
    assert model.generate(mu, greedy=True).shape == (3, 64)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = MusicVAE(MEL_TINY).eval()
    attrs = {"names": ["note_density"], "vectors": torch.randn(1, MEL_TINY.z_dim)}
    path = save_checkpoint(tmp_path / "m.pt", model, attributes=attrs, metrics={"a": 1.0})
    loaded, blob = load_model(path)
    x = _melodies(2, MEL_TINY.seq_len)
    with torch.no_grad():
        assert torch.equal(model(x, sample_z=False)[0], loaded(x, sample_z=False)[0])
    assert torch.load(path, weights_only=True)["format"] == "refrain-musicvae"
    assert blob["metrics"] == {"a": 1.0}


class Evil:
    """An arbitrary pickled object: loading must refuse it, never unpickle it."""


def test_foreign_checkpoints_are_refused(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a Refrain MusicVAE checkpoint"):
        load_model(other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_model(garbage)

    evil = tmp_path / "evil.pt"
    torch.save({"format": "refrain-musicvae", "version": 1, "obj": Evil()}, evil)
    with pytest.raises(CheckpointError):
        load_model(evil)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


@pytest.fixture
def tiny_vae(tmp_path) -> MelodyVAE:
    torch.manual_seed(0)
    model = MusicVAE(MEL_TINY)
    attrs = {"names": ["note_density", "register"], "vectors": torch.randn(2, MEL_TINY.z_dim)}
    return MelodyVAE.load(save_checkpoint(tmp_path / "m.pt", model, attributes=attrs), device="cpu")


def test_sampling_is_reproducible_with_a_seed(tiny_vae):
    a = tiny_vae.sample(5, temperature=1.0, seed=7)
    b = tiny_vae.sample(5, temperature=1.0, seed=7)
    c = tiny_vae.sample(5, temperature=1.0, seed=8)
    assert a.shape == (5, MEL_TINY.seq_len)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_inference_api(tiny_vae):
    toks = _melodies(2, MEL_TINY.seq_len).numpy()
    mu, sigma = tiny_vae.encode(list(toks))
    assert mu.shape == (2, MEL_TINY.z_dim) and bool((sigma > 0).all())
    mu_midi, _ = tiny_vae.encode(tokens_to_midi_bytes(toks[0]))
    assert torch.allclose(mu_midi[0], mu[0], atol=1e-5)
    path = tiny_vae.interpolate(mu[0], mu[1], 5)
    assert path.shape == (5, MEL_TINY.z_dim)
    assert torch.allclose(path[0], mu[0], atol=1e-4) and torch.allclose(path[-1], mu[1], atol=1e-4)
    near = tiny_vae.similar(mu[0], 3, spread=0.1, seed=0)
    assert near.shape == (3, MEL_TINY.z_dim)
    steered = tiny_vae.steer(mu, "register", 2.0)
    assert torch.allclose(steered - mu, 2.0 * tiny_vae.attribute_vectors[1].expand_as(mu))
    with pytest.raises(ValueError):
        tiny_vae.steer(mu, "loudness", 1.0)
    out = tiny_vae.decode(path, temperature=0)
    assert out.shape == (5, MEL_TINY.seq_len)
    assert tiny_vae.to_midi_bytes(out[0])[:4] == b"MThd"
    with pytest.raises(MelodyError):
        tiny_vae.encode(b"garbage")


def test_slerp_keeps_norm_between_equal_norm_points():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, torch.tensor([0.5]))[0, 0]
    assert mid.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_data_split_by_tune_windows_and_transposition(midi_folder, tmp_path):
    splits = build_splits(midi_folder, 32, cache_dir=tmp_path / "cache", seed=1, max_pad=0.25)
    names = [set(v) for v in splits.files.values()]
    assert sum(len(s) for s in names) == 24
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert splits.train.shape[1] == 32 and len(splits.train) > 0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    again = build_splits(midi_folder, 32, cache_dir=tmp_path / "cache", seed=1)  # from the cache
    assert torch.equal(again.train, splits.train)
    x = splits.train[:8].long()
    y = transpose_batch(x, 5, torch.Generator().manual_seed(0))
    notes = x >= FIRST_NOTE
    assert torch.equal(y[~notes], x[~notes])
    shift = (y - x)[notes]
    assert shift.abs().max() <= 5


@pytest.mark.parametrize("hierarchical", [False, True])
def test_generation_agrees_with_the_teacher_forced_decoder(hierarchical):
    """Greedy decoding, fed back through the teacher-forced path, predicts the same tokens."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="g",
        seq_len=32,
        bar_len=16,
        hierarchical=hierarchical,
        embed_dim=8,
        enc_hidden=16,
        z_dim=8,
        dec_hidden=16,
        dec_layers=2,
        conductor_hidden=16,
        conductor_dim=8,
        dropout=0.0,
    )
    model = MusicVAE(cfg).eval()
    z = torch.randn(4, 8)
    y = model.generate(z, greedy=True)
    with torch.no_grad():
        logits = model.decode_logits(z, model.shift_right(y))
    assert torch.equal(logits.argmax(-1), y)


def test_a_melody_cache_file_stands_for_its_folder(midi_folder, tmp_path):
    """A GPU machine trains from the cache alone: same splits as from the MIDI folder."""
    from generation.vae.data import melody_cache_path

    from_folder = build_splits(midi_folder, 32, cache_dir=tmp_path / "cache", seed=1)
    cache = melody_cache_path(midi_folder, tmp_path / "cache")
    from_cache = build_splits(cache, 32, seed=1)
    assert from_cache.files == from_folder.files
    assert torch.equal(from_cache.train, from_folder.train) and torch.equal(from_cache.test, from_folder.test)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def test_training_keeps_the_best_epoch_also_across_a_resume(midi_folder, tmp_path):
    """model.pt holds the weights of the best validation epoch, not the last one, and a run stopped
    and resumed keeps the best epoch it had before the stop (nanoGPT keeps best_val_loss the same way)."""
    from generation.vae.checkpoint import read_checkpoint
    from generation.vae.train import main

    # Seed 19 puts 3 of the 24 tunes in the validation split (the default seed puts none there);
    # the high learning rate makes the validation accuracy go up and down between epochs.
    common = ["--config", "mel_tiny", "--data", str(midi_folder), "--threads", "1", "--cache-dir", str(tmp_path / "c")]
    common += ["--seed", "19", "--set", "lr=0.05"]
    epochs = 4
    whole = main(common + ["--out", str(tmp_path / "whole"), "--epochs", str(epochs)])
    accuracies = [v["accuracy"] for v in whole["valid_history"]]
    best_epoch = accuracies.index(max(accuracies)) + 1  # the first epoch that reached the best
    assert best_epoch < epochs, f"this run's last epoch is its best {accuracies}: the test would prove nothing"
    assert whole["valid"]["epoch"] == best_epoch and whole["valid"]["accuracy"] == max(accuracies)

    # The same run stopped after its best epoch: last.pt then holds exactly the best epoch's weights.
    main(common + ["--out", str(tmp_path / "resumed"), "--epochs", str(best_epoch)])
    best_weights = read_checkpoint(tmp_path / "resumed" / "last.pt")["state_dict"]
    resumed = main(common + ["--out", str(tmp_path / "resumed"), "--epochs", str(epochs), "--resume"])

    last_weights = read_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    assert not _same_weights(best_weights, last_weights)  # training went on after the best epoch
    assert _same_weights(read_checkpoint(tmp_path / "whole" / "model.pt")["state_dict"], best_weights)
    assert _same_weights(read_checkpoint(tmp_path / "resumed" / "model.pt")["state_dict"], best_weights)
    untimed = lambda v: {k: x for k, x in v.items() if k != "minutes"}  # noqa: E731
    assert untimed(resumed["valid"]) == untimed(whole["valid"])
    assert [v["accuracy"] for v in resumed["valid_history"]] == accuracies

    # The kept weights score what the report says on the validation split.
    splits = build_splits(midi_folder, MEL_TINY.seq_len, seed=19, cache_dir=tmp_path / "c")
    model, blob = load_model(tmp_path / "whole" / "model.pt")
    assert evaluate_tf(model, splits.valid, torch.device("cpu"))["accuracy"] == pytest.approx(max(accuracies))
    assert blob["metrics"]["valid_accuracy"] == max(accuracies)


def test_training_warm_starts_in_half_precision(midi_folder, tmp_path):
    from generation.vae.checkpoint import read_checkpoint
    from generation.vae.train import main

    common = ["--config", "mel_tiny", "--data", str(midi_folder), "--threads", "1", "--cache-dir", str(tmp_path / "c")]
    main(common + ["--out", str(tmp_path / "a"), "--epochs", "1"])
    second = main(
        common
        + [
            "--out",
            str(tmp_path / "b"),
            "--epochs",
            "1",
            "--half",
            "--init",
            str(tmp_path / "a" / "model.pt"),
            "--init-step",
            "500",
        ]
    )
    assert second["steps"] > 500  # the schedules went on from step 500
    blob = read_checkpoint(tmp_path / "b" / "model.pt")
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    model, _ = load_model(tmp_path / "b" / "model.pt")
    assert next(model.parameters()).dtype == torch.float32


def test_evaluation_command_end_to_end_with_a_temperature_sweep(midi_folder, tmp_path):
    import json

    from generation.vae.evaluate import main as evaluate_main

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", MusicVAE(MEL_TINY))
    out = tmp_path / "eval.json"
    report = evaluate_main(
        [
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--data",
            str(midi_folder),
            "--out",
            str(out),
            "--samples",
            "8",
            "--recon-limit",
            "16",
            "--baseline-minutes",
            "0.005",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp_path / "c"),
            "--sweep",
            "0.5",
            "1.0",
        ]
    )
    assert json.loads(out.read_text())["reconstruction"] == report["reconstruction"]
    assert out.with_suffix(".png").is_file()
    assert 0 <= report["reconstruction"]["sampled_accuracy"] <= 1
    assert [s["temperature"] for s in report["samples_by_temperature"]] == [1.0, 0.5]  # headline first, no repeat
    for sweep in report["samples_by_temperature"]:
        for name in ("vae_prior", "ngram", "lstm_lm"):
            assert 0 <= sweep[name]["oa_mean"] <= 1
    with pytest.raises(ValueError, match="temperature"):
        evaluate_main(
            [
                "--checkpoint",
                str(tmp_path / "m.pt"),
                "--data",
                str(midi_folder),
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "c"),
                "--sweep",
                "0",
            ]
        )
