"""What a generation job asks of the long-form model, in one batched pass: the job side of LongformComposer.

Plain PyTorch (no Django): the worker hands it one TuneRequest per job, with its parent tracks
already encoded as LatentTunes, and gets each job's tunes back, decoded in a single decoder pass.

How each kind works in the space of 2-bar latents (chunk by chunk, so a tune keeps its structure):

- sample: whole tunes from the prior, of `bars` bars in `meter`.
- continue: the parent's first `prompt_bars` kept bit for bit, the prior writes the rest up to `bars`.
- infill: the parent's bars `from_bar`..`to_bar` written anew by the prior, every other bar kept.
- similar: every distinct chunk of the parent moved by Gaussian noise of std `spread` (the same noise
  for equal chunks, so a repeated phrase is still repeated).
- interpolate: chunk i of the result is the slerp of chunk i of the two parents (the shorter one's length).
- steer: every chunk moved along the 2-bar VAE's attribute vector, by a ladder of amounts.

A track's embedding for the recommender is the mean of its chunk latents (see `embedding`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .chunks import bars_per_chunk
from .longform import LatentTune, LongformComposer
from .sample import slerp

KINDS = ("sample", "similar", "interpolate", "steer", "continue", "infill")
METERS = ((2, 4), (3, 4), (4, 4), (6, 8))


@dataclasses.dataclass(frozen=True)
class TuneRequest:
    kind: str
    count: int
    seed: int
    temperature: float | None = None  # None: the checkpoint's served temperature
    bars: int = 16
    meter: tuple[int, int] = (4, 4)
    parents: tuple[LatentTune, ...] = ()
    spread: float = 0.3
    attribute: str = ""
    amount: float = 0.0
    prompt_bars: int = 8
    from_bar: int = 1  # infill: first bar written anew (1-based)
    to_bar: int = 2  # infill: last bar written anew (inclusive)


@dataclasses.dataclass
class ComposedTune:
    tokens: np.ndarray
    meter: tuple[int, int]
    latent: np.ndarray  # the tune's embedding (mean of its chunk latents)


def embedding(tune: LatentTune) -> np.ndarray:
    """A tune's single vector: the mean of its chunk latents. Every chunk weighs alike, whatever the
    tune's length, and the vector lives in the 2-bar VAE's space, like a chunk's own latent."""
    return tune.z.float().mean(dim=0).numpy().astype(np.float32)


class LongformJobs:
    kinds = KINDS

    def __init__(self, composer: LongformComposer, attributes: dict | None = None):
        self.composer = composer
        names = list((attributes or {}).get("names") or [])
        vectors = (attributes or {}).get("vectors")
        self.attribute_names = names
        self.attribute_vectors = None if vectors is None else torch.as_tensor(vectors, dtype=torch.float32)

    @classmethod
    def load(cls, prior_path: str | Path) -> LongformJobs:
        """The prior and the 2-bar VAE it names (LongformComposer.load), each read once."""
        composer = LongformComposer.load(prior_path=prior_path)
        return cls(composer, composer.vae_attributes)

    @property
    def default_temperature(self) -> float:
        return float(self.composer.default_temperature)

    # ---- tracks in -----------------------------------------------------------------------------------
    def encode(self, items) -> list[LatentTune]:
        """MIDI bytes or paths -> LatentTunes (all chunks of all items in one encoder pass)."""
        return self.composer.encode(items)

    # ---- tunes out -----------------------------------------------------------------------------------
    def compose(self, requests: list[TuneRequest]) -> list[list[ComposedTune] | ValueError]:
        """Every request's tunes; all their chunks go through the decoder in one batched pass. A request
        the model cannot honour (bars past a parent's end, an unknown attribute) gets its ValueError in
        its place, and the others are composed."""
        planned: list[list[LatentTune] | ValueError] = []
        for request in requests:
            try:
                planned.append(self._plan(request))
            except ValueError as exc:
                planned.append(exc)
        flat = [tune for tunes in planned if not isinstance(tunes, ValueError) for tune in tunes]
        tokens = self.composer.decode(flat) if flat else []
        out: list[list[ComposedTune] | ValueError] = []
        k = 0
        for tunes in planned:
            if isinstance(tunes, ValueError):
                out.append(tunes)
                continue
            out.append([ComposedTune(tokens[k + i], t.meter, embedding(t)) for i, t in enumerate(tunes)])
            k += len(tunes)
        return out

    def to_midi_bytes(self, tune: ComposedTune) -> bytes:
        return self.composer.to_midi_bytes(tune.tokens, meter=tune.meter)

    # ---- each kind ---------------------------------------------------------------------------------
    def _plan(self, r: TuneRequest) -> list[LatentTune]:
        if r.kind not in KINDS:
            raise ValueError(f"unknown kind {r.kind!r}; choose one of {KINDS}")
        if r.kind == "sample":
            return self.composer.sample(
                n_chunks=self._chunks(r.bars, r.meter),
                meter=(int(r.meter[0]), int(r.meter[1])),
                temperature=r.temperature,
                seed=r.seed,
                count=r.count,
            )
        parent = self._fit(r.parents[0])
        if r.kind == "continue":
            keep = max(1, min(parent.n_chunks, self._chunks(r.prompt_bars, parent.meter)))
            total = max(self._chunks(r.bars, parent.meter), keep + 1)
            prompt = _slice(parent, 0, keep)
            return [
                self.composer.continue_from(
                    prompt, n_total=min(total, self.composer.max_chunks), temperature=r.temperature, seed=r.seed + i
                )
                for i in range(r.count)
            ]
        if r.kind == "infill":
            mask = np.zeros(parent.n_chunks, dtype=bool)
            per_chunk = bars_per_chunk(parent.meter)
            first, last = int((r.from_bar - 1) // per_chunk), int((r.to_bar - 1) // per_chunk)
            mask[max(0, first) : min(parent.n_chunks, last + 1)] = True
            if not mask.any():
                length = round(parent.n_chunks * per_chunk)
                raise ValueError(f"bars {r.from_bar}-{r.to_bar} are past the tune's end ({length} bars)")
            return [
                self.composer.infill(parent, mask, temperature=r.temperature, seed=r.seed + i) for i in range(r.count)
            ]
        if r.kind == "similar":
            uniq, inverse = torch.unique(parent.z.float(), dim=0, return_inverse=True)
            g = torch.Generator().manual_seed(int(r.seed))
            out = []
            for _ in range(r.count):
                moved = uniq + r.spread * torch.randn(uniq.shape, generator=g)
                out.append(dataclasses.replace(parent, z=moved[inverse], source=None))
            return out
        if r.kind == "interpolate":
            other = self._fit(r.parents[1])
            n = min(parent.n_chunks, other.n_chunks)
            a, b = parent.z[:n].float(), other.z[:n].float()
            out = []
            for t in torch.linspace(0, 1, r.count + 2)[1:-1].tolist():
                z = slerp(a, b, torch.tensor([t]))[0]
                near = parent if t < 0.5 else other
                out.append(LatentTune(z, near.ties[:n].clone(), near.meter, shift=near.shift))
            return out
        if r.kind == "steer":
            if self.attribute_vectors is None or r.attribute not in self.attribute_names:
                raise ValueError(f"unknown attribute {r.attribute!r}; this model has {self.attribute_names}")
            vector = self.attribute_vectors[self.attribute_names.index(r.attribute)]
            amounts = [r.amount * (i + 1) / r.count for i in range(r.count)]
            return [dataclasses.replace(parent, z=parent.z.float() + a * vector, source=None) for a in amounts]
        raise AssertionError(r.kind)

    def _chunks(self, bars: int, meter: tuple[int, int]) -> int:
        """Chunks that hold `bars` bars of this meter (2 bars of 4/4, 3/4 or 6/8, 4 of 2/4: chunks.py)."""
        return max(
            1, min(self.composer.max_chunks, int(np.ceil(bars / bars_per_chunk((int(meter[0]), int(meter[1]))))))
        )

    def _fit(self, tune: LatentTune) -> LatentTune:
        """A parent longer than the prior's window keeps its first max_chunks chunks."""
        return tune if tune.n_chunks <= self.composer.max_chunks else _slice(tune, 0, self.composer.max_chunks)


def _slice(tune: LatentTune, start: int, end: int) -> LatentTune:
    return dataclasses.replace(tune, z=tune.z[start:end].clone(), ties=tune.ties[start:end].clone(), source=None)
