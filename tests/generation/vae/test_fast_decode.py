"""GraphDecoder (generation/vae/fast_decode.py) on CPU: same tokens as MusicVAE.generate, seeds, padding.

On CPU the decoder runs its decode eagerly (no CUDA graph), so these tests check the code that a
GPU captures; the capture itself is exercised by bench/vae_bench.py on a GPU. No database needed.
"""

from __future__ import annotations

import json

import pytest
import torch

from generation.vae.config import get_config
from generation.vae.fast_decode import GraphDecoder
from generation.vae.model import MusicVAE
from generation.vae.representation import VOCAB_SIZE

torch.set_num_threads(1)

FLAT = get_config("mel_tiny")
HIERARCHICAL = get_config("mel_16bar").with_overrides(
    name="mel_16bar_test",
    seq_len=64,
    embed_dim=8,
    enc_hidden=16,
    z_dim=8,
    dec_hidden=16,
    dec_layers=2,
    conductor_hidden=16,
    conductor_dim=8,
    dropout=0.0,
)


def lively_model(cfg, seed: int = 0) -> MusicVAE:
    """A random model with weights large enough that greedy decoding varies from step to step.

    With PyTorch's default initialisation a tiny untrained decoder repeats one token forever,
    which would make "same tokens as generate" a weak check.
    """
    torch.manual_seed(seed)
    model = MusicVAE(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def latents(cfg, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(seed))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cfg", [FLAT, HIERARCHICAL], ids=["flat", "hierarchical"])
@pytest.mark.parametrize("conductor", ["module", "cells"])
def test_fp32_greedy_tokens_equal_generate(cfg, conductor):
    model = lively_model(cfg)
    z = latents(cfg, 6)
    expected = model.generate(z, greedy=True)
    assert expected.unique().numel() > 3  # the check means something only if the melodies vary
    decoder = GraphDecoder(model, 6, torch.float32, greedy=True, conductor=conductor)
    tokens = decoder(z)
    assert tokens.dtype == torch.long and tokens.shape == (6, cfg.seq_len)
    assert torch.equal(tokens, expected)


def test_hand_unrolled_conductor_matches_the_models_lstm():
    """The conductor a CUDA graph uses ("cells") computes the model's bar embeddings."""
    model = lively_model(HIERARCHICAL)
    z = latents(HIERARCHICAL, 5)
    decoder = GraphDecoder(model, 5, torch.float32, greedy=True, conductor="cells")
    decoder.z_buf.copy_(z)
    with torch.no_grad():
        bars = torch.stack(decoder._bar_conditions(decoder.z_buf), 1)
        expected = model.bar_embeddings(z)
    assert bars.shape == expected.shape
    torch.testing.assert_close(bars, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [FLAT, HIERARCHICAL], ids=["flat", "hierarchical"])
def test_same_seed_same_tokens_and_other_seed_other_tokens(cfg):
    model = lively_model(cfg)
    z = latents(cfg, 4)
    decoder = GraphDecoder(model, 4, torch.float32, temperature=0.8)
    first, again, other = decoder(z, seeded(3)), decoder(z, seeded(3)), decoder(z, seeded(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert int(first.min()) >= 0 and int(first.max()) < VOCAB_SIZE


def test_sampling_draws_what_generate_draws():
    """Gumbel noise b + T*g with logits - b equals generate's logits / T + g up to rounding: on CPU the
    same seed even gives the same uniform numbers, so nearly every token must agree (temperature
    applied the same way). Exact agreement is not promised: rounding differs at near-ties."""
    model = lively_model(HIERARCHICAL)
    z = latents(HIERARCHICAL, 4)
    for temperature in (1.0, 0.5):
        ours = GraphDecoder(model, 4, torch.float32, temperature=temperature)(z, seeded(11))
        theirs = model.generate(z, temperature=temperature, generator=seeded(11))
        assert (ours == theirs).float().mean().item() >= 0.95


def test_smaller_batch_is_padded_and_larger_batch_is_chunked():
    model = lively_model(HIERARCHICAL)
    z = latents(HIERARCHICAL, 5)
    expected = model.generate(z, greedy=True)
    padded = GraphDecoder(model, 8, torch.float32, greedy=True)
    assert torch.equal(padded(z[:3]), expected[:3])
    assert torch.equal(padded(z[0]), expected[:1])  # one latent vector without a batch dimension
    chunked = GraphDecoder(model, 2, torch.float32, greedy=True)
    assert torch.equal(chunked(z), expected)
    assert chunked(z[:0]).shape == (0, HIERARCHICAL.seq_len)


def test_padding_rows_do_not_change_sampled_rows_under_a_seed():
    """Sampled rows depend on the seed and the captured batch size, not on what fills the padding."""
    model = lively_model(HIERARCHICAL)
    z = latents(HIERARCHICAL, 6)
    decoder = GraphDecoder(model, 6, torch.float32, temperature=1.0)
    full = decoder(z, seeded(2))
    part = decoder(z[:4], seeded(2))
    assert torch.equal(part, full[:4])


def test_bf16_decodes_close_to_fp32():
    model = lively_model(HIERARCHICAL)
    z = latents(HIERARCHICAL, 6)
    reference = model.generate(z, greedy=True)
    tokens = GraphDecoder(model, 6, torch.bfloat16, greedy=True)(z)
    assert tokens.shape == reference.shape and tokens.dtype == torch.long
    assert (tokens == reference).float().mean().item() >= 0.8
    sampled = GraphDecoder(model, 6, torch.bfloat16, temperature=1.0)
    assert torch.equal(sampled(z, seeded(5)), sampled(z, seeded(5)))


def test_describe_is_json_and_reports_the_cpu_fallback():
    decoder = GraphDecoder(lively_model(FLAT), 2, torch.float32)
    info = json.loads(json.dumps(decoder.describe()))
    assert info["graph_captured"] is False
    assert "no CUDA" in info["fallback_reason"]
    assert info["dtype"] == "float32" and info["sampling"] is True


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dtype": torch.float16}, ValueError, "dtype"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, ValueError, "batch_size"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"conductor": "cudnn"}, ValueError, "conductor"),
        ({"use_graph": True}, ValueError, "CUDA"),
    ],
)
def test_bad_constructor_arguments_are_clear(kwargs, error, match):
    args = {"batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        GraphDecoder(lively_model(FLAT), **args)


def test_bad_call_arguments_are_clear():
    decoder = GraphDecoder(lively_model(FLAT), 2, torch.float32)
    with pytest.raises(ValueError, match=r"shape \[batch, 16\]"):
        decoder(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="floating-point"):
        decoder(torch.zeros(2, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        decoder([[0.0] * 16])
    with pytest.raises(TypeError, match="Generator"):
        decoder(torch.zeros(2, 16), generator=42)
    with pytest.raises(TypeError, match="MusicVAE"):
        GraphDecoder(torch.nn.Linear(2, 2), 2)


def _cpu_fused_lstm_cell(input_gates, hidden_gates, c, b_ih=None, b_hh=None):
    """What ATen's CUDA kernel computes: gate sums and nonlinearities in fp32, results in the input dtype."""
    gates = input_gates.float() + hidden_gates.float()
    if b_ih is not None:
        gates = gates + b_ih.float() + b_hh.float()
    i, f, g, o = gates.chunk(4, 1)
    c_new = torch.sigmoid(f) * c.float() + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new.to(c.dtype), c_new.to(c.dtype)


@pytest.mark.parametrize("cfg", [FLAT, HIERARCHICAL], ids=["flat", "hierarchical"])
def test_the_cuda_kernel_branch_decodes_the_same_melodies(cfg, monkeypatch):
    """The branch a GPU takes (fused LSTM cell, bf16 matmul into fp32 logits), with CPU stand-ins
    for those two kernels: same argument order, gate order and bias handling as the plain branch."""
    from generation.vae import fast_decode

    monkeypatch.setattr(fast_decode, "_fused_lstm_cell", _cpu_fused_lstm_cell)
    monkeypatch.setattr(fast_decode, "_mm_float32", lambda a, b: a.float() @ b.float())
    model = lively_model(cfg)
    z = latents(cfg, 6)
    expected = model.generate(z, greedy=True)
    for dtype, at_least in ((torch.float32, 0.95), (torch.bfloat16, 0.8)):
        decoder = GraphDecoder(model, 6, dtype, greedy=True, conductor="cells")
        decoder.fused_cell = decoder.mm_float_out = True
        assert (decoder(z) == expected).float().mean().item() >= at_least
        sampler = GraphDecoder(model, 6, dtype, temperature=0.7, conductor="cells")
        sampler.fused_cell = sampler.mm_float_out = True
        plain = GraphDecoder(model, 6, dtype, temperature=0.7, conductor="cells")
        assert (sampler(z, seeded(4)) == plain(z, seeded(4))).float().mean().item() >= at_least


# ---- MelodyVAE.decode's dispatch to captured graphs (CUDA only; forced here to run eagerly) -------


def _vae(cfg, fast_decode):
    from generation.vae.sample import MelodyVAE

    return MelodyVAE(lively_model(cfg), {}, torch.device("cpu"), fast_decode=fast_decode)


def test_melody_vae_ignores_fast_decode_on_cpu():
    cfg = get_config("mel_tiny")
    vae = _vae(cfg, "bf16")
    vae.decode(latents(cfg, 3), temperature=0)
    assert not vae._graphs  # the plain loop ran: no decoder was built


def test_melody_vae_graph_path_buckets_batches_and_matches_the_loop(monkeypatch):
    from generation.vae import sample

    cfg = get_config("mel_tiny")
    vae = _vae(cfg, "fp32")
    z = latents(cfg, 5)
    expected = vae.decode(z, temperature=0)
    monkeypatch.setattr(sample.MelodyVAE, "_uses_graphs", lambda self: True)
    assert (vae.decode(z, temperature=0) == expected).all()
    vae.decode(latents(cfg, 7, seed=2), temperature=0)  # 5 and 7 rows share the bucket of 8
    vae.decode(z[:1], temperature=0.5, seed=1)
    assert sorted(vae._graphs) == [(1, 0.5), (8, 0.0)]
    first, again = vae.decode(z, temperature=0.5, seed=4), vae.decode(z, temperature=0.5, seed=4)
    assert (first == again).all()
    monkeypatch.setattr(sample, "GRAPHS_KEPT", 2)
    vae.decode(z[:2], temperature=0)
    assert len(vae._graphs) == 2 and (2, 0.0) in vae._graphs  # least recently used dropped


def test_melody_vae_refuses_an_unknown_fast_decode():
    with pytest.raises(ValueError, match="fast_decode"):
        _vae(get_config("mel_tiny"), "fp8")
