"""Inference API over a trained checkpoint: encode, sample, decode, interpolate, similar, steer.

    from generation.vae.sample import MelodyVAE
    vae = MelodyVAE.load("generation/checkpoints/mel_16bar.pt")
    z = vae.sample_z(4, seed=0)
    tokens = vae.decode(z, temperature=0.5, seed=0)
    midi = vae.to_midi_bytes(tokens[0])

Everything is batched (first dimension), runs on the model's device, and takes a seed so the same
call gives the same melodies.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .representation import MelodyError, extract_melody, tokens_to_midi_bytes, validate_tokens, window


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b for each t in [0, 1]: [steps, B, z]."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))  # [B]
    so = torch.sin(omega)
    t = t[:, None, None]
    wa = torch.sin((1 - t) * omega[None, :, None]) / so[None, :, None]
    wb = torch.sin(t * omega[None, :, None]) / so[None, :, None]
    return wa * a[None] + wb * b[None]


FAST_DECODE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GRAPH_MAX_BATCH = 4096  # larger calls run as several replays of the 4096-row graph
GRAPHS_KEPT = 8  # captured graphs per model (one per batch bucket and temperature), least recent dropped


class MelodyVAE:
    def __init__(self, model, blob: dict, device: torch.device, fast_decode: str | None = None):
        """`fast_decode` ("bf16", "fp32" or None): on CUDA, decode by replaying captured CUDA graphs
        (generation.vae.fast_decode; bench/results/vae_gpu_h100_*.json) instead of step-by-step
        kernel launches. Ignored on CPU, where the plain loop is the fast one."""
        if fast_decode is not None and fast_decode not in FAST_DECODE_DTYPES:
            raise ValueError(f"fast_decode must be one of {sorted(FAST_DECODE_DTYPES)} or None, got {fast_decode!r}")
        self.fast_decode = fast_decode
        self._graphs: OrderedDict[tuple[int, float], object] = OrderedDict()
        self.model = model
        self.cfg = model.cfg
        self.device = device
        attrs = blob.get("attributes") or {}
        self.attribute_names: list[str] = list(attrs.get("names", []))
        self.attribute_vectors: torch.Tensor | None = (
            attrs["vectors"].float().to(device) if "vectors" in attrs else None
        )
        self.metrics: dict = blob.get("metrics", {})

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device | None = None, fast_decode: str | None = None
    ) -> MelodyVAE:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, blob = load_model(path, dev)
        return cls(model, blob, dev, fast_decode=fast_decode)

    @property
    def seq_len(self) -> int:
        return self.cfg.seq_len

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    # ---- encode ------------------------------------------------------------------------------
    def tokens_from_midi(self, midi: str | Path | bytes | bytearray | io.BytesIO) -> np.ndarray:
        """The first `seq_len` steps of a MIDI file's melody (padded with silence); MelodyError if unusable."""
        mel = extract_melody(midi)
        return window(mel, 0, self.seq_len)

    @torch.no_grad()
    def encode(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """MIDI (path/bytes) or token sequences -> (mu, sigma), each [B, z]. One item or a list."""
        if isinstance(items, (str, Path, bytes, io.BytesIO)) or (isinstance(items, np.ndarray) and items.ndim == 1):
            items = [items]
        rows = []
        for it in items:
            if isinstance(it, (str, Path, bytes, bytearray, io.BytesIO)):
                rows.append(self.tokens_from_midi(it))
            else:
                arr = validate_tokens(it)
                if len(arr) != self.seq_len:
                    raise MelodyError(f"token sequences must have {self.seq_len} steps, got {len(arr)}")
                rows.append(arr)
        x = torch.as_tensor(np.stack(rows), dtype=torch.long, device=self.device)
        mu, sigma = self.model.encode(x)
        return mu, sigma

    # ---- latent targets -------------------------------------------------------------------------
    def sample_z(self, n: int, seed: int | None = None, scale: float = 1.0) -> torch.Tensor:
        g = _generator(seed, torch.device("cpu"))
        return (torch.randn(n, self.z_dim, generator=g) * scale).to(self.device)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
        """Slerp from a to b in `steps` points (ends included): [steps, z] or [steps, B, z]."""
        single = a.dim() == 1
        a2, b2 = (a[None], b[None]) if single else (a, b)
        out = slerp(
            a2.to(self.device).float(), b2.to(self.device).float(), torch.linspace(0, 1, steps, device=self.device)
        )
        return out[:, 0] if single else out

    def similar(self, z: torch.Tensor, n: int, spread: float = 0.3, seed: int | None = None) -> torch.Tensor:
        """n latent points around z (Gaussian, std `spread`): [n, z] for one z."""
        g = _generator(seed, torch.device("cpu"))
        z = z.reshape(-1, self.z_dim)[0].to(self.device)
        return z[None] + spread * torch.randn(n, self.z_dim, generator=g).to(self.device)

    def steer(self, z: torch.Tensor, attribute: str, amount: float) -> torch.Tensor:
        """Move z along a data-derived attribute vector (+ = more of it: denser, higher, more major...)."""
        if self.attribute_vectors is None or attribute not in self.attribute_names:
            raise ValueError(f"unknown attribute {attribute!r}; this checkpoint has {self.attribute_names}")
        vec = self.attribute_vectors[self.attribute_names.index(attribute)]
        return z.to(self.device) + amount * vec

    # ---- decode ------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self, z: torch.Tensor, temperature: float = 0.5, seed: int | None = None, batch_size: int = 4096
    ) -> np.ndarray:
        """z [B, z_dim] -> tokens [B, seq_len] (int64). temperature 0 = argmax."""
        z = z.reshape(-1, self.z_dim).to(self.device).float()
        g = _generator(seed, self.device)
        if self._uses_graphs() and len(z):
            return self._graph_decoder(len(z), temperature)(z, generator=g).cpu().numpy()
        outs = [
            self.model.generate(
                z[i : i + batch_size], temperature=temperature, greedy=temperature <= 0, generator=g
            ).cpu()
            for i in range(0, len(z), batch_size)
        ]
        return torch.cat(outs).numpy()

    def _uses_graphs(self) -> bool:
        return self.fast_decode is not None and self.device.type == "cuda"

    def _graph_decoder(self, rows: int, temperature: float):
        """The captured decoder for a batch of `rows` at this temperature: batch sizes are bucketed
        to powers of two (padding is decoded and dropped) so a handful of graphs serves any job mix."""
        from .fast_decode import GraphDecoder

        assert self.fast_decode is not None, "graph decoding is off for this model"
        bucket = min(GRAPH_MAX_BATCH, 1 << max(0, rows - 1).bit_length())
        key = (bucket, float(temperature))
        decoder = self._graphs.pop(key, None)
        if decoder is None:
            decoder = GraphDecoder(
                self.model,
                bucket,
                dtype=FAST_DECODE_DTYPES[self.fast_decode],
                temperature=temperature,
                greedy=temperature <= 0,
            )
            while len(self._graphs) >= GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        self._graphs[key] = decoder  # most recently used last
        return decoder

    def sample(self, n: int, temperature: float = 0.5, seed: int | None = None) -> np.ndarray:
        """n new melodies from the prior: tokens [n, seq_len]."""
        return self.decode(self.sample_z(n, seed=seed), temperature=temperature, seed=seed)

    @staticmethod
    def to_midi_bytes(tokens, qpm: float = 120.0, meter: tuple[int, int] = (4, 4), program: int = 0) -> bytes:
        return tokens_to_midi_bytes(tokens, qpm=qpm, meter=meter, program=program)
