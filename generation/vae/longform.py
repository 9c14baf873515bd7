"""Long tunes as sequences of 2-bar latents: the inference API the platform calls.

    from generation.vae.longform import LongformComposer
    composer = LongformComposer.load()                      # default prior + mel_2bar_large.pt
    tunes = composer.sample(n_chunks=8, meter=(4, 4), temperature=composer.default_temperature, seed=0, count=4)
    tokens = composer.decode(tunes)                          # list of int64 token arrays, one per tune
    midi = composer.to_midi_bytes(tokens[0], meter=tunes[0].meter)

    latents = composer.encode(["a.mid", b"MThd..."])        # any tune -> its LatentTune
    longer = composer.continue_from(latents[0], n_total=16, seed=1)   # prompt kept bit for bit
    mask = np.zeros(latents[0].n_chunks, bool); mask[2:4] = True
    varied = composer.infill(latents[0], mask, seed=2)         # unmasked chunks kept bit for bit

A LatentTune is the tune's chunk latents (posterior means of the 2-bar VAE), the chunks' tie flags
and its meter; how a meter is cut into chunks and how chunks are joined is in chunks.py. Decoding
is greedy (argmax) per chunk, so equal latents give equal bars and the prior's copies are exact
repeats; every chunk of every tune in one call goes through the decoder in one batched pass
(distinct latents only). Nothing here imports Django.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, load_prior
from .chunks import WINDOW, chunk_steps, join_chunks, melody_chunks, tonic_shift, transpose_melody, tune_register
from .keys import key_probs
from .model import MusicVAE
from .prior import LatentPrior, first_repeats, meter_index
from .representation import FIRST_NOTE, VOCAB_SIZE, Melody, MelodyError, extract_melody, tokens_to_midi_bytes

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_VAE = CHECKPOINTS / "mel_2bar_large.pt"
DEFAULT_PRIOR = CHECKPOINTS / "latent_prior.pt"
DEFAULT_TEMPERATURE = 1.0  # overridden by the checkpoint's metrics["served_temperature"] when present


@dataclass
class LatentTune:
    z: torch.Tensor  # float32 [n, z_dim]
    ties: torch.Tensor  # bool [n]
    meter: tuple[int, int] = (4, 4)
    source: torch.Tensor | None = field(default=None, repr=False)  # per chunk: -2 given, -1 new, j copy of j
    shift: int = 0  # semitones added to the decoded tokens (the latents are of the tune moved to C)

    @property
    def n_chunks(self) -> int:
        return int(self.z.shape[0])

    @property
    def steps(self) -> int:
        return chunk_steps(self.meter)


def shift_tokens(tokens: np.ndarray, shift: int) -> np.ndarray:
    """Note tokens moved by `shift` semitones, by an octave less (or more) where it would leave the range."""
    t = np.asarray(tokens, dtype=np.int64)
    notes = t >= FIRST_NOTE
    if not shift or not notes.any():
        return t
    for s in (shift, shift - 12, shift + 12):
        if t[notes].min() + s >= FIRST_NOTE and t[notes].max() + s < VOCAB_SIZE:
            return np.where(notes, t + s, t)
    return t


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


class LongformComposer:
    def __init__(
        self,
        vae: MusicVAE,
        prior: LatentPrior | None,
        temperature: float = DEFAULT_TEMPERATURE,
        bf16_decode: bool = False,
    ):
        """`bf16_decode`: run the CPU decoder under bfloat16 autocast, about twice as fast on CPUs with
        bf16 instructions; measured on 512 held-out chunks: accuracy 0.9914 instead of 0.9918,
        0.9989 of the tokens unchanged."""
        if vae.cfg.seq_len != WINDOW or vae.cfg.hierarchical:
            raise ValueError(f"the chunk VAE must be a flat {WINDOW}-step model, got {vae.cfg.name}")
        if prior is not None and prior.cfg.z_dim != vae.cfg.z_dim:
            raise ValueError(f"prior z_dim {prior.cfg.z_dim} does not match the VAE's {vae.cfg.z_dim}")
        self.vae = vae.eval()
        self.prior = prior.eval() if prior is not None else None
        self.default_temperature = temperature
        self.bf16_decode = bf16_decode
        metrics = getattr(prior, "metrics", None) or {}
        # a prior trained on tunes moved to C: tunes are encoded in C and moved back when decoded
        self.key_normalized = bool(metrics.get("key_normalized", False))
        self.default_copy_bias = float(metrics.get("served_copy_bias", 0.0))
        top_p = metrics.get("served_top_p")  # codebook priors: nucleus of codes (None: the prior's config)
        self.default_top_p = None if top_p is None else float(top_p)
        self.key_shift_probs = torch.tensor(metrics.get("key_shift_probs", [0.0] * 6 + [1.0] + [0.0] * 5))
        # {"low": pitch of row 0, "counts": [registers, 12]}: training tunes' keys by their register in C
        self.key_shifts_by_register: dict | None = metrics.get("key_shifts_by_register")
        # keys.fit_key_model's coefficients: a tune's key by its range, pitch classes, meter and length in C
        # (where present, used instead of the register table)
        self.key_model: dict | None = metrics.get("key_model")
        # {"meters", "lengths", "pointers"}: the training tunes' forms (prior_train.tune_forms), from which
        # new tunes' repeat structures are drawn (`draw_forms`); `use_forms` False leaves them to the pointer
        self.forms: dict | None = metrics.get("forms")
        self.use_forms = True
        self._forms_by_meter: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] | None = None
        self.vae_attributes: dict | None = None  # set by load(): the VAE checkpoint's attribute vectors
        self._code_index: dict[bytes, int] = {}  # a codebook prior's drawn latents -> their codes
        self._code_index_version = -1

    @classmethod
    def load(
        cls,
        prior_path: str | Path | None = DEFAULT_PRIOR,
        vae_path: str | Path | None = None,
        bf16_decode: bool = False,
    ) -> LongformComposer:
        """CPU models. `prior_path=None` loads only the VAE (encode/decode, no sampling). The VAE the
        prior names is looked for beside the prior first, then among the committed checkpoints; its
        attribute vectors (for steering) are kept as `vae_attributes`."""
        prior, blob = (None, {}) if prior_path is None else load_prior(prior_path)
        if vae_path is None:
            name = blob.get("vae", DEFAULT_VAE.name)
            beside = Path(prior_path).parent / name if prior_path is not None else None
            vae_path = beside if beside is not None and beside.is_file() else CHECKPOINTS / name
        vae, vae_blob = load_model(vae_path)
        temp = float((blob.get("metrics") or {}).get("served_temperature", DEFAULT_TEMPERATURE))
        if prior is not None:
            prior.metrics = blob.get("metrics") or {}
        composer = cls(vae, prior, temp, bf16_decode=bf16_decode)
        composer.vae_attributes = vae_blob.get("attributes")
        return composer

    @property
    def max_chunks(self) -> int:
        return self.prior.cfg.max_chunks if self.prior is not None else 10**9

    # ---- tune <-> latents ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, items) -> list[LatentTune]:
        """MIDI paths/bytes or Melody objects -> one LatentTune each (all chunks in one encoder pass)."""
        if isinstance(items, (str, Path, bytes, bytearray, io.BytesIO, Melody)):
            items = [items]
        chunked, shifts = [], []
        for it in items:
            mel = it if isinstance(it, Melody) else extract_melody(it)
            s = tonic_shift(mel) if self.key_normalized else 0
            chunked.append(melody_chunks(transpose_melody(mel, s)))
            shifts.append(-s)
        windows = np.concatenate([c.windows for c in chunked])
        uniq, inverse = np.unique(windows, axis=0, return_inverse=True)
        mu = self.vae.encode(torch.from_numpy(uniq))[0].float()[torch.from_numpy(inverse.reshape(-1))]
        out, k = [], 0
        for c, s in zip(chunked, shifts):
            n = len(c.windows)
            out.append(LatentTune(mu[k : k + n].clone(), torch.from_numpy(c.ties.copy()), c.meter, shift=s))
            k += n
        return out

    def _codes_of(self, latents: torch.Tensor) -> np.ndarray:
        """Per latent row: the code it is (a codebook prior's draw), else -1."""
        prior = self.prior
        if prior is None or not prior.cfg.codebook:
            return np.full(len(latents), -1, dtype=np.int64)
        if self._code_index_version != prior.code_coords._version:
            self._code_index = {c.numpy().tobytes(): k for k, c in enumerate(prior.code_latents())}
            self._code_index_version = prior.code_coords._version
        return np.array([self._code_index.get(row.numpy().tobytes(), -1) for row in latents], dtype=np.int64)

    @torch.no_grad()
    def decode_chunks(self, z: torch.Tensor) -> np.ndarray:
        """[N, z_dim] -> greedy windows [N, 32]; each distinct latent decoded once, all in one batch.
        A codebook prior's drawn chunks are the real chunks they stand for: their steps are looked up
        (the decoder renders a code's latent, its 64 principal components, as that chunk in 0.99 of
        the steps and 94 % of the chunks exactly, measured on 2,000 codes; the lookup is exact and
        costs nothing)."""
        if len(z) == 0:
            return np.zeros((0, WINDOW), dtype=np.int64)
        uniq, inverse = torch.unique(z.float(), dim=0, return_inverse=True)
        out = np.zeros((len(uniq), WINDOW), dtype=np.int64)
        code = self._codes_of(uniq)
        known = code >= 0
        if known.any():
            out[known] = self.prior.code_windows[torch.from_numpy(code[known])].long().numpy()  # type: ignore[union-attr]
        if not known.all():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_decode):
                out[~known] = self.vae.generate(uniq[torch.from_numpy(~known)], greedy=True).numpy()
        return out[inverse.numpy()]

    def decode(self, tunes: LatentTune | list[LatentTune]) -> list[np.ndarray]:
        """Whole tunes' tokens (chunks joined by the boundary rule of chunks.py)."""
        tunes = [tunes] if isinstance(tunes, LatentTune) else tunes
        windows = self.decode_chunks(torch.cat([t.z for t in tunes])) if tunes else None
        out, k = [], 0
        for t in tunes:
            out.append(shift_tokens(join_chunks(windows[k : k + t.n_chunks], t.ties.numpy(), t.steps), t.shift))
            k += t.n_chunks
        return out

    # ---- the prior -----------------------------------------------------------------------------
    def _prior(self) -> LatentPrior:
        if self.prior is None:
            raise RuntimeError("no prior loaded: LongformComposer.load(prior_path=...)")
        return self.prior

    def _fill(
        self,
        z,
        ties,
        known,
        meters,
        ends,
        temperature,
        seed,
        shifts=None,
        copy_bias=None,
        top_p=None,
        form=None,
        key_lengths=None,
    ) -> list[LatentTune]:
        prior = self._prior()
        temperature = self.default_temperature if temperature is None else temperature
        meter_idx = torch.tensor([meter_index(m) for m in meters])
        z, ties, source = prior.fill(
            z,
            ties,
            known,
            meter_idx,
            torch.as_tensor(ends, dtype=torch.bool),
            temperature,
            _generator(seed),
            self.default_copy_bias if copy_bias is None else copy_bias,
            self.default_top_p if top_p is None else top_p,
            self._known_windows(z, known),
            form,
        )
        if shifts is None:
            shifts = self._draw_keys(z, meters, seed, key_lengths)
        return [LatentTune(z[b], ties[b], tuple(meters[b]), source[b], int(shifts[b])) for b in range(len(meters))]

    def _known_windows(self, z: torch.Tensor, known: torch.Tensor) -> torch.Tensor | None:
        """The steps of the known chunks (zeros elsewhere) for a prior that scores the pitches at chunk
        boundaries or the tune's pitches (its scale, range and figures); None for one that does none of
        these, or when nothing is known."""
        prior = self._prior()
        scores_pitches = prior.cfg.boundary_bins or prior.cfg.context_terms or prior.cfg.figure_terms
        if not (prior.cfg.codebook and scores_pitches) or not known.any():
            return None
        windows = torch.zeros(*known.shape, WINDOW, dtype=torch.long)
        windows[known] = torch.from_numpy(self.decode_chunks(z[known].float()))
        return windows

    def _draw_keys(
        self, z: torch.Tensor, meters, seed: int | None, lengths: list[int | None] | None = None
    ) -> list[int]:
        """New tunes' keys (semitones from C, -6..5; seeded): drawn from the key model (`keys.py`: as
        training tunes of that range, those pitch classes, meter and length in C were in each key; the
        length is that of the training tune whose form a tune took, `lengths`, where it took one), or,
        for a prior without one, as often as training tunes of the same register in C were in each
        key (`key_shifts_by_register`), or as often as the corpus uses each key. A key drawn regardless
        of register put tunes written high in C up a fifth more: their mean pitches spread twice as
        wide as real tunes'. One by register alone put 32-bar tunes in D a sixth of the time, where
        real ones of that length are in D a third of the time. Why the form's length: a 16-bar tune
        shaped as the first strain of a 32-bar jig is in the keys jigs are in."""
        if not self.key_normalized:
            return [0] * len(meters)
        g = _generator(None if seed is None else seed + 7)
        table = self.key_shifts_by_register
        if table is None and self.key_model is None:
            return (torch.multinomial(self.key_shift_probs, len(meters), replacement=True, generator=g) - 6).tolist()
        windows = self.decode_chunks(z.reshape(-1, z.shape[-1])).reshape(len(meters), z.shape[1], -1)
        if self.key_model is not None:
            lengths = lengths or [None] * len(meters)
            probs = torch.from_numpy(
                np.stack([key_probs(self.key_model, w, m, n) for w, m, n in zip(windows, meters, lengths)])
            )
        else:
            assert table is not None
            counts = torch.tensor(table["counts"], dtype=torch.float64)
            rows = [min(max(tune_register(w) - int(table["low"]), 0), len(counts) - 1) for w in windows]
            # one tune's worth of the overall shares added to each row: a register no training tune had
            # gets the overall shares
            probs = counts[rows] + self.key_shift_probs.double()[None]
        return (torch.multinomial(probs.float(), 1, generator=g)[:, 0] - 6).tolist()

    def sample(
        self,
        n_chunks: int,
        meter: tuple[int, int] = (4, 4),
        temperature: float | None = None,
        seed: int | None = None,
        count: int = 1,
        ends: bool = True,
        copy_bias: float | None = None,
        forms: bool | None = None,
    ) -> list[LatentTune]:
        """`count` new tunes of `n_chunks` chunks (ends=True: a whole tune, with its ending), their
        repeat structures drawn from the training tunes' forms (`sample_batch`)."""
        if not 1 <= n_chunks <= self.max_chunks:
            raise ValueError(f"n_chunks must be in 1..{self.max_chunks}, got {n_chunks}")
        return self.sample_batch(
            n_chunks, [tuple(meter)] * count, [ends] * count, temperature, seed, copy_bias=copy_bias, forms=forms
        )

    def sample_batch(
        self,
        n_chunks: int,
        meters: list[tuple[int, int]],
        ends: list[bool],
        temperature=None,
        seed=None,
        copy_bias: float | None = None,
        top_p: float | None = None,
        forms: bool | None = None,
    ) -> list[LatentTune]:
        """One tune per (meter, ends) pair, all of n_chunks chunks, in one batch. `forms` (default
        `use_forms`): each tune's repeat structure drawn from the training tunes' (`draw_forms`) instead
        of by the pointer (`copy_bias` then only matters where no training tune is long enough)."""
        B, Z = len(meters), self.vae.cfg.z_dim
        zeros = torch.zeros(B, n_chunks, dtype=torch.bool)
        use = self.use_forms if forms is None else forms
        form, lengths = self._pick_forms(n_chunks, meters, ends, seed) if use else (None, None)
        z = torch.zeros(B, n_chunks, Z)
        return self._fill(
            z,
            zeros,
            zeros,
            meters,
            ends,
            temperature,
            seed,
            copy_bias=copy_bias,
            top_p=top_p,
            form=form,
            key_lengths=lengths,
        )

    def draw_forms(
        self,
        n_chunks: int,
        meters: list[tuple[int, int]],
        ends: list[bool],
        seed: int | None = None,
        prefixes: list[list[int]] | None = None,
    ) -> torch.Tensor | None:
        """[B, n_chunks]: each new tune's repeat structure, for chunk i the chunk it repeats (-1: a new
        chunk): the first n_chunks chunks of a training tune of its meter, drawn at random among those
        whose length is a multiple of n_chunks for a tune that ends there (`ends`: a whole tune of that
        length, or the opening section of one twice or more as long, which ends where the tune's
        sections end), of more chunks for one that does not, and of at least n_chunks when there are
        none such; -2 (the pointer decides) where no training tune of its meter is that long. `prefixes` (a continuation's): each tune's form must begin as this
        one does (its prompt's repeat structure, `repeat_structure`), or the pointer decides. None for a
        prior without the table.

        Why: left to the pointer, on its own samples, 16 bars of 4/4 repeated their chunk 2 back 1.5
        times a tune and their chunk 4 back 0.65 times; real tunes 1.0 and 1.4 times (a strain played
        twice): a 4-chunk repeat hangs on one early decision the pointer takes from the chunks it drew.
        Why a tune that ends may take a longer tune's opening: drawn only from tunes of exactly its length,
        16-bar tunes as the service writes them (whole tunes that end) repeated 0.21 of their chunks where
        real 16-bar passages repeat 0.35 (most are the opening strains of longer dance tunes, played
        twice), and were told from them with AUC 0.80 on validation tunes (four draws); 0.74 with these
        forms, and 0.73 with the opening of any longer tune, which at 32 bars did worse (0.67 against
        0.65; whole 16-chunk jigs and reels beat the first half of a tune of 17 to 31 chunks)."""
        return self._pick_forms(n_chunks, meters, ends, seed, prefixes)[0]

    def _pick_forms(
        self, n_chunks: int, meters, ends, seed: int | None = None, prefixes=None
    ) -> tuple[torch.Tensor | None, list[int | None] | None]:
        """draw_forms's forms, and the length of the training tune each was taken from (None: none)."""
        if not self.forms:
            return None, None
        if self._forms_by_meter is None:
            by: dict[tuple[int, ...], list[int]] = {}
            for k, m in enumerate(self.forms["meters"]):
                by.setdefault(tuple(m), []).append(k)
            lengths = np.asarray(self.forms["lengths"])
            self._forms_by_meter = {m: (np.asarray(ks), lengths[ks]) for m, ks in by.items()}
        g = _generator(None if seed is None else seed + 11)
        out = torch.full((len(meters), n_chunks), -2, dtype=torch.long)
        picked: list[int | None] = [None] * len(meters)
        pointers = self.forms["pointers"]
        for b, (meter, end) in enumerate(zip(meters, ends)):
            tunes, lengths = self._forms_by_meter.get(tuple(meter), (np.zeros(0, int), np.zeros(0, int)))
            if prefixes is not None:
                head = list(prefixes[b])
                fits = np.array([pointers[k][: len(head)] == head for k in tunes], dtype=bool)
                tunes, lengths = tunes[fits], lengths[fits]
            if end:
                pool = tunes[(lengths >= n_chunks) & (lengths % n_chunks == 0)]
            else:
                pool = tunes[lengths > n_chunks]
            if not len(pool):
                pool = tunes[lengths >= n_chunks]
            if len(pool):
                pick = int(pool[int(torch.randint(len(pool), (1,), generator=g))])
                out[b] = torch.tensor(pointers[pick][:n_chunks])
                picked[b] = int(self.forms["lengths"][pick])
        return out, picked

    @staticmethod
    def repeat_structure(z: torch.Tensor) -> list[int]:
        """A tune's form as the training forms say it: for each chunk of z [n, Z] the first earlier chunk
        it repeats bit for bit, -1 for none."""
        return first_repeats([chunk.numpy().tobytes() for chunk in z.detach().cpu()])

    def continue_from(
        self, prompt: LatentTune, n_total: int, temperature: float | None = None, seed: int | None = None, ends=True
    ) -> LatentTune:
        """The prompt's chunks (kept bit for bit) followed by new ones, n_total chunks in all. Where the
        prior has forms (`use_forms`), which new chunk repeats which chunk comes from a training tune
        whose form begins as the prompt's does (`draw_forms`), else from the pointer."""
        n = prompt.n_chunks
        if not n <= n_total <= self.max_chunks:
            raise ValueError(f"n_total must be in {n}..{self.max_chunks}, got {n_total}")
        Z = self.vae.cfg.z_dim
        z = torch.zeros(1, n_total, Z)
        z[0, :n] = prompt.z.float()
        ties = torch.zeros(1, n_total, dtype=torch.bool)
        ties[0, :n] = prompt.ties
        known = torch.zeros(1, n_total, dtype=torch.bool)
        known[0, :n] = True
        form = None
        if self.use_forms:
            form = self.draw_forms(n_total, [prompt.meter], [ends], seed, [self.repeat_structure(prompt.z)])
        return self._fill(z, ties, known, [prompt.meter], [ends], temperature, seed, [prompt.shift], form=form)[0]

    @torch.no_grad()
    def infill(
        self,
        tune: LatentTune,
        mask: np.ndarray,
        temperature: float | None = None,
        seed: int | None = None,
        candidates: int = 16,
        ends: bool = True,
    ) -> LatentTune:
        """New chunks where `mask` is True, the others kept bit for bit. `candidates` fills are drawn
        left to right and one is kept with probability proportional to the whole sequence's
        likelihood under the prior, so the chunks after each gap count too."""
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        if mask.shape != (tune.n_chunks,):
            raise ValueError(f"mask must have one entry per chunk ({tune.n_chunks}), got shape {tuple(mask.shape)}")
        if tune.n_chunks > self.max_chunks:
            raise ValueError(f"at most {self.max_chunks} chunks")
        C, n = candidates, tune.n_chunks
        z = tune.z.float()[None].repeat(C, 1, 1)
        ties = tune.ties[None].repeat(C, 1)
        known = (~mask)[None].repeat(C, 1)
        filled = self._fill(z, ties, known, [tune.meter] * C, [ends] * C, temperature, seed, [tune.shift] * C)
        zs = torch.stack([f.z for f in filled])
        ts = torch.stack([f.ties for f in filled])
        prior = self._prior()
        ll = prior.log_likelihood(
            zs,
            ts,
            torch.ones(C, n, dtype=torch.bool),
            torch.full((C,), meter_index(tune.meter)),
            torch.full((C,), n),
            torch.full((C,), bool(ends)),
            windows=self._known_windows(zs, torch.ones(C, n, dtype=torch.bool)),
        )
        logp = ll["z"] + ll["tie"]
        g = _generator(None if seed is None else seed + 1)
        pick = int(torch.multinomial(torch.softmax(logp - logp.max(), 0), 1, generator=g))
        return filled[pick]

    @staticmethod
    def to_midi_bytes(tokens: np.ndarray, meter: tuple[int, int] = (4, 4), qpm: float = 120.0) -> bytes:
        return tokens_to_midi_bytes(tokens, qpm=qpm, meter=meter)


__all__ = ["DEFAULT_PRIOR", "DEFAULT_VAE", "LatentTune", "LongformComposer", "MelodyError"]
