"""Model + training configs as small dataclasses; `CONFIGS` names the ones the commands accept."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mel_2bar"
    seq_len: int = 32  # 16th steps per window
    bar_len: int = 16  # steps decoded from one conductor embedding (hierarchical only)
    hierarchical: bool = False
    embed_dim: int = 32
    enc_hidden: int = 128  # per direction
    enc_layers: int = 1
    z_dim: int = 64
    dec_hidden: int = 256
    dec_layers: int = 1
    conductor_hidden: int = 256
    conductor_dim: int = 128  # size of one bar embedding
    dropout: float = 0.1

    # training
    batch_size: int = 64  # small batches: more updates per CPU minute
    lr: float = 2e-3
    lr_min: float = 1e-4
    lr_decay: float = 0.9999  # per step, exponential as in MusicVAE
    grad_clip: float = 1.0
    beta_max: float = 0.2
    beta_rate: float = 0.9995  # beta_t = beta_max * (1 - rate**t)
    free_bits: float = 48.0  # nats per sequence not penalized (MusicVAE "free_bits")
    sampling_max: float = 0.2  # final probability of feeding the model its own prediction
    sampling_warmup: int = 800  # steps before scheduled sampling starts to ramp up
    sampling_ramp: int = 1500  # steps to reach sampling_max
    transpose: int = 5  # +- semitones, training split only
    hop_bars: int = 1
    max_minutes: float = 10.0
    max_epochs: int = 100
    seed: int = 1234

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_overrides(self, **kw) -> ModelConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# Sizes are for the 2 shared CPU cores this was trained on (about 300 windows/s); on a GPU raise
# them with --set (MusicVAE used 2048/1024 LSTMs and z = 512).
MEL_2BAR = ModelConfig()

# 16 bars of 16 steps. The decoder only sees one bar at a time, so with teacher forcing all
# 16 bars are decoded in parallel as one batch of short sequences.
MEL_16BAR = ModelConfig(
    name="mel_16bar",
    seq_len=256,
    hierarchical=True,
    embed_dim=32,
    enc_hidden=64,
    z_dim=64,
    dec_hidden=128,
    dec_layers=2,
    conductor_hidden=128,
    conductor_dim=64,
    dropout=0.1,
    batch_size=32,
    lr=2e-3,
    beta_max=0.2,
    beta_rate=0.9995,
    free_bits=48.0,
    sampling_max=0.2,
    sampling_warmup=500,
    sampling_ramp=1500,
    max_minutes=28.0,
)

# The full models, for one GPU (bench/gpu_train.sh): MusicVAE-like widths at half its sizes, batch 512.
# The 16-bar model gets far more free bits: 16 bars of melody hold a few hundred nats, and with 48
# the posterior cannot carry enough of them to reconstruct.
MEL_2BAR_LARGE = replace(
    MEL_2BAR,
    name="mel_2bar_large",
    embed_dim=64,
    enc_hidden=512,
    z_dim=256,
    dec_hidden=512,
    dec_layers=2,
    batch_size=512,
    lr=1e-3,
    lr_min=1e-5,
    lr_decay=0.9998,
    free_bits=64.0,
    sampling_max=0.25,
    sampling_warmup=2000,
    sampling_ramp=3000,
)

MEL_16BAR_LARGE = replace(
    MEL_16BAR,
    name="mel_16bar_large",
    embed_dim=64,
    enc_hidden=512,
    enc_layers=2,
    z_dim=512,
    conductor_hidden=512,
    conductor_dim=256,
    dec_hidden=512,
    dec_layers=2,
    dropout=0.2,
    batch_size=512,
    lr=1e-3,
    lr_min=1e-5,
    lr_decay=0.9998,
    free_bits=256.0,
    sampling_max=0.3,
    sampling_warmup=1500,
    sampling_ramp=2500,
)

# A few seconds of training; used by tests and smoke runs.
MEL_TINY = ModelConfig(
    name="mel_tiny",
    seq_len=32,
    embed_dim=16,
    enc_hidden=32,
    z_dim=16,
    dec_hidden=64,
    dec_layers=1,
    dropout=0.0,
    batch_size=16,
    lr=1e-2,
    free_bits=0.0,
    beta_max=0.0,
    sampling_max=0.0,
    transpose=0,
    max_minutes=1.0,
)

CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (MEL_2BAR, MEL_16BAR, MEL_2BAR_LARGE, MEL_16BAR_LARGE, MEL_TINY)}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}") from None
