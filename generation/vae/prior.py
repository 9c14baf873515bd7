"""A prior over sequences of 2-bar latents: a causal Transformer with a copy pointer and a head for new chunks.

At chunk i, given the chunks before it and the conditions (meter, length in chunks, whether the
sequence ends the tune), the model gives
  - a pointer distribution over {new, copy chunk 0, ..., copy chunk i-1}: "copy j" repeats chunk j's
    latent bit for bit, so the decoded 2 bars repeat exactly (real tunes repeat ~29 % of their chunks);
  - for "new", either (codebook, the served kind) a categorical distribution over every distinct
    chunk of the training tunes, scored through each chunk's coordinates in the latent space plus a
    learned vector and bias per chunk and normalized over the chunks of the tune's meter (the ones
    the sampler draws from; `meter_softmax`), or (the first kind) a diagonal Gaussian mixture over
    the standardized latent;
  - the chunk's tie flag (its first note continues the previous chunk's last note; chunks.py).
The likelihood is exact for these mixed events: a repeat scores log p(copy of any equal earlier
chunk), a new chunk log p(new) + log p(code) (or + log GMM(z)), the code's softmax taken over the
codes no earlier chunk of the tune is (the sampler never draws those: a repeat is the pointer's).

Beside the state's dot products, a codebook prior's head can score how a code relates to the tune
so far, which a dot product does not express: the interval into it from the previous chunk
(`boundary_bins`), the pitch classes it adds outside the tune's scale and how far it widens the
tune's range (`context_terms`), its distance to each of the last few chunks (`similar_lags`, a
pull towards variations of them), and the share of its melodic figures (4-note interval patterns)
the tune has already played (`figure_terms`: real tunes come back to their figures, transposed and
varied). Each is zero when untrained, so it is trained on its own on top of a trained prior.

Why a codebook of real chunks: the mixture's draws fall where the 2-bar decoder renders jumpy,
scattered bars (a classifier told its tunes from real ones with AUC 0.98), while a drawn code is a
real chunk. Codes from k-means clusters (4,096 or 16,384) were measured first: rendering real
held-out tunes through their clusters alone was told apart with AUC 0.85-0.92, so the clusters, not
the sequence model, were the limit; with every distinct chunk as a code the same test gave 0.68.

sample / continue_ / infill all run one loop: positions are filled left to right, fixed chunks are
kept as given (bit for bit), free ones drawn; a `form` can say which chunks repeat which instead of
the pointer (longform.draw_forms). infill draws `candidates` completions per request and
keeps one with probability proportional to the full-sequence likelihood, so the chunks after a gap
(which a left-to-right model cannot see while drawing it) still decide which fill is kept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .chunks import WINDOW
from .metrics import DIATONIC
from .representation import FIRST_NOTE, HOLD, MIN_PITCH, OFF

# The corpus's meters, most frequent first; anything else shares the last index.
METERS: tuple[tuple[int, int], ...] = ((2, 4), (4, 4), (6, 8), (3, 4), (2, 2), (3, 8), (4, 2), (9, 8), (6, 4), (3, 2))


def meter_index(meter: tuple[int, int]) -> int:
    m = (int(meter[0]), int(meter[1]))
    return METERS.index(m) if m in METERS else len(METERS)


@dataclass(frozen=True)
class PriorConfig:
    name: str = "latent_prior"
    z_dim: int = 256
    d_model: int = 192  # sized for 2 shared CPU cores: ~1 s a step of 64 tunes, 40 minutes of training
    n_layers: int = 3
    n_heads: int = 4
    ff_dim: int = 512
    mixtures: int = 8
    pca_dim: int = 64  # the mixture lives in the top principal components of the latents (0: all z_dim)
    max_chunks: int = 32
    dropout: float = 0.1
    # training
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_minutes: float = 30.0
    prefix_crop: float = 0.3  # share of training sequences cut to a random prefix (not ending the tune)
    seed: int = 1234
    # codebook > 0: a new chunk is one of `codebook` real chunks, every distinct chunk of the training
    # tunes (a categorical head over them), instead of a draw from the mixture; set by the trainer
    codebook: int = 0
    code_embed_dim: int = 32  # a learned vector per code, beside its fixed coordinates (see heads)
    top_p: float = 1.0  # nucleus sampling of codes (1.0: the whole distribution)
    # codebook priors: normalize a chunk's code distribution over its meter's codes, the ones the
    # sampler draws from (False: over all codes, as the first codebook prior was trained)
    meter_softmax: bool = False
    # codebook priors, > 0: a new chunk's logit also scores the interval from the previous chunk's last
    # note to its first (a learned function of the state over -R..R semitones, clipped, and "no note")
    boundary_bins: int = 0
    # codebook priors: a new chunk's logit also scores how it fits the tune so far (`scale_bins`, `span_bins`): by
    # how many pitch classes it adds outside the tune's diatonic scale, and by how far it widens the
    # tune's range (a learned function of the state per bin)
    context_terms: bool = False
    # codebook priors, > 0: a new chunk's logit also has -w_l(h) * (mean squared distance from its coordinates
    # to those of the chunk l back), l = 1..similar_lags: a learned pull towards variations of earlier chunks
    similar_lags: int = 0
    # codebook priors: a new chunk's logit also scores which share of its melodic figures (4-note
    # interval patterns, `chunk_figures`) the tune has already played (`figure_bins`; a learned function
    # of the state per bin)
    figure_terms: bool = False
    # codebook priors: a new chunk's logit also scores the pitch classes of its first and of its last
    # note (12 each and "no note", in the key-normalized tunes' C), a learned function of the state:
    # where a tune starts and ends on its tonic, which the codes' coordinates do not say; and, for a
    # chunk the tune's form repeats as its last (`TuneSoFar.closes`), its last note's once more
    edge_terms: bool = False
    # codebook priors: a new chunk's logit also scores its rhythm, a learned linear function of the
    # state over which of its steps start a note and which start a rest (`chunk_rhythm`): how busy and
    # how dotted a tune is, shared by the many codes of one rhythm
    rhythm_terms: bool = False
    # codebook priors: a new chunk's logit also scores its pitch classes, a learned linear function of
    # the state over the share of the chunk's sounding time each pitch class takes (`chunk_pitch_classes`)
    pitch_terms: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PriorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRIOR_TINY = PriorConfig(
    name="prior_tiny", z_dim=16, d_model=32, n_layers=1, n_heads=2, ff_dim=64, mixtures=2, pca_dim=8
)
# the served kind (a codebook head with every term), as small: for tests and smoke runs
PRIOR_TINY_CODES = replace(
    PRIOR_TINY,
    name="prior_tiny_codes",
    codebook=12,
    code_embed_dim=4,
    meter_softmax=True,
    boundary_bins=3,
    context_terms=True,
    similar_lags=2,
    figure_terms=True,
    edge_terms=True,
    rhythm_terms=True,
    pitch_terms=True,
)


def copy_targets(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, n, n] bool: chunk j (< i) is bit-identical to chunk i (both real positions)."""
    eq = (z[:, :, None, :] == z[:, None, :, :]).all(-1)
    causal = torch.ones(z.shape[1], z.shape[1], dtype=torch.bool, device=z.device).tril(-1)
    return eq & causal & valid[:, :, None] & valid[:, None, :]


def last_chunks(valid: torch.Tensor) -> torch.Tensor:
    """[B, n] bool: each tune's last valid chunk (`valid` [B, n])."""
    return (valid.long().cumsum(1) == valid.sum(1, keepdim=True)) & valid


def closing_chunks(copies: torch.Tensor, valid: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """[B, n] bool: the chunk a tune that ends (`ends` [B]) repeats as its last valid chunk, at its
    first occurrence (`copies` [B, n, n]: chunk i repeats chunk j; `valid` [B, n]); none where the last
    chunk is new."""
    repeated = (copies & last_chunks(valid)[:, :, None]).any(1)  # [B, n]: chunks the last one repeats
    first = repeated & ~copies.any(-1)  # the first occurrence is no copy itself
    return first & ends[:, None].bool()


def first_repeats(chunks: list[bytes]) -> list[int]:
    """A tune's form from its chunks (any keys that are equal where the chunks are): for each chunk
    the first earlier chunk it repeats exactly, -1 for none."""
    first: dict[bytes, int] = {}
    return [j if j < k else -1 for k, j in enumerate(first.setdefault(c, k) for k, c in enumerate(chunks))]


NUCLEUS_LADDER = (2048, 4096)


def nucleus_rungs(probs: torch.Tensor, top_p: float) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The nucleus of each row of probs [B, K] (the smallest set of likeliest codes whose probability
    reaches top_p), as (rows [r], kept [r, k], codes [r, k]) per rung: each row's k likeliest codes,
    likeliest first, with those after its nucleus set to 0.

    A row's nucleus is looked for among its 2,048 likeliest codes first, then its 4,096, and only then
    among all (a partial top-k of 2,048 costs a fifth of sorting 17,000 codes); a row is settled by the
    first rung that holds its whole nucleus, so the nucleus is exact either way. The rungs fit the
    served prior at temperature 1.0: after the first chunk a 4/4 row's nucleus holds a median of
    850-2,000 codes by position, and at most 2 % of rows more than 4,096."""
    todo = torch.arange(len(probs), device=probs.device)
    for k in (*NUCLEUS_LADDER, probs.shape[-1]):
        if not len(todo):
            return
        rows = probs[todo]
        ranked, order = rows.topk(min(k, rows.shape[-1]), -1)  # sorted, likeliest first
        before = ranked.cumsum(-1) - ranked  # the probability of the likelier codes
        # the same running sum decides "holds the nucleus" and the cut, so they agree to the last bit
        done = (before[:, -1] + ranked[:, -1] >= top_p) | (k >= probs.shape[-1])
        yield todo[done], ranked[done].masked_fill(before[done] >= top_p, 0.0), order[done]
        todo = todo[~done]


def _inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column drawn in each row of a cumulative (unnormalized) distribution [B, K] by its uniform number
    u [B, 1]: the first whose cumulative probability exceeds u's share, so a column of probability 0 is
    never drawn."""
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0].clamp(max=cdf.shape[-1] - 1)


def sample_codes(
    logits: torch.Tensor,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    take: torch.Tensor | None = None,
) -> torch.Tensor:
    """One code per row of [B, K] logits: softmax(logits / temperature), cut to the smallest set of
    codes whose probability reaches `top_p` (nucleus sampling; always at least the likeliest code).
    `take` [N]: draw N codes instead, the i-th from row take[i] (rows shared by several draws, e.g. the
    first chunk of a batch of tunes of one meter, are cut to their nucleus once).

    Drawn by inverse CDF, one uniform number per draw (torch.multinomial took 0.3 s a call on 256
    rows of 66,000 codes on one CPU thread, and an exponential race drawing a number per code 0.6 s;
    this takes about 0.05 s); with a nucleus, within its rung's likeliest codes only."""
    take = torch.arange(len(logits), device=logits.device) if take is None else take
    probs = F.softmax(logits / temperature, -1)
    u = torch.rand(len(take), 1, generator=generator, dtype=torch.float64, device=logits.device)
    if top_p >= 1.0:
        return _inverse_cdf(probs.double().cumsum(-1)[take], u)
    out = torch.empty(len(take), dtype=torch.long, device=logits.device)
    slot = torch.full((len(logits),), -1, dtype=torch.long, device=logits.device)
    for rows, kept, codes in nucleus_rungs(probs, top_p):
        slot[rows] = torch.arange(len(rows), device=logits.device)
        mine = torch.nonzero(slot[take] >= 0)[:, 0]
        at = slot[take[mine]]
        out[mine] = codes[at].gather(-1, _inverse_cdf(kept.double().cumsum(-1)[at], u[mine])[:, None])[:, 0]
        slot[rows] = -1
    return out


def edge_pitches(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The MIDI pitch of each window's [..., steps] first and last note-on (-1 where it has none)."""
    on = windows >= FIRST_NOTE
    has = on.any(-1)
    first = windows.gather(-1, on.byte().argmax(-1, keepdim=True))[..., 0]
    last = windows.gather(-1, windows.shape[-1] - 1 - on.flip(-1).byte().argmax(-1, keepdim=True))[..., 0]
    pitch = lambda t: torch.where(has, t.long() - FIRST_NOTE + MIN_PITCH, -1)  # noqa: E731
    return pitch(first), pitch(last)


EDGE_BINS = 13  # a note's pitch class, and "no note"
RHYTHM_DIMS = 2 * WINDOW  # per step of a chunk: a note starts there; a rest starts there


def chunk_rhythm(windows: torch.Tensor) -> torch.Tensor:
    """[..., RHYTHM_DIMS] float: which steps of windows [..., WINDOW] start a note, then which start a
    rest (past a 24-step chunk only its padding's OFF can, where its last note sounds to the end)."""
    return torch.cat([windows >= FIRST_NOTE, windows == OFF], -1).float()


def chunk_pitch_classes(windows: torch.Tensor) -> torch.Tensor:
    """[..., 12] float: the share of each window's [..., WINDOW] sounding steps each pitch class
    takes (zeros for a window with no note; steps held over from before its first event are not its)."""
    steps = torch.arange(windows.shape[-1], device=windows.device).expand_as(windows)
    last_event = torch.where(windows != HOLD, steps, -1).cummax(-1).values
    token = windows.gather(-1, last_event.clamp(min=0))
    sounding = (last_event >= 0) & (token >= FIRST_NOTE)
    pc = (token.long() - FIRST_NOTE + MIN_PITCH) % 12
    hist = torch.zeros(*windows.shape[:-1], 12, device=windows.device)
    hist.scatter_add_(-1, torch.where(sounding, pc, 0), sounding.float())
    return hist / hist.sum(-1, keepdim=True).clamp(min=1)


def edge_bins(pitch: torch.Tensor) -> torch.Tensor:
    """The pitch class of MIDI pitches (-1: no note, binned 12)."""
    return torch.where(pitch < 0, EDGE_BINS - 1, pitch % 12)


def interval_bins(first: torch.Tensor, prev_last: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin of the interval prev_last -> first (broadcast): -bins..bins semitones clipped to 0..2*bins,
    and 2*bins + 1 where either has no note."""
    none = (first < 0) | (prev_last < 0)
    return torch.where(none, 2 * bins + 1, (first - prev_last).clamp(-bins, bins) + bins)


SPAN_EDGES = (1, 3, 5, 8, 13)  # semitones a chunk widens the tune's range by: 0, 1-2, 3-4, 5-7, 8-12, 13+
SCALE_BINS, SPAN_BINS = 3, len(SPAN_EDGES) + 2  # the last span bin: no note before


def outside_scale() -> torch.Tensor:
    """[4096]: for every set of pitch classes (a 12-bit mask), how many lie outside the diatonic scale
    that holds the most of them."""
    masks = torch.arange(4096)
    counts = []
    for k in range(12):
        scale = sum(1 << ((p + k) % 12) for p in DIATONIC)
        out = masks & ~scale & 0xFFF
        counts.append(sum((out >> b) & 1 for b in range(12)))
    return torch.stack(counts).min(0).values


def chunk_context(windows: torch.Tensor) -> torch.Tensor:
    """[..., 3] of windows [..., steps]: the pitch classes of its notes (a 12-bit mask), its lowest and
    its highest MIDI pitch (128 and -1 without notes)."""
    w = windows.long()
    on = w >= FIRST_NOTE
    pitch = w - FIRST_NOTE + MIN_PITCH
    mask = sum((on & (pitch % 12 == k)).any(-1).long() << k for k in range(12))
    lo = torch.where(on, pitch, 128).min(-1).values
    hi = torch.where(on, pitch, -1).max(-1).values
    return torch.stack([torch.as_tensor(mask), lo, hi], -1)


def widen(context: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
    """The tune's context [..., 3] (chunk_context's fields over its chunks so far) with a chunk's added."""
    return torch.stack(
        [
            context[..., 0] | chunk[..., 0],
            torch.minimum(context[..., 1], chunk[..., 1]),
            torch.maximum(context[..., 2], chunk[..., 2]),
        ],
        -1,
    )


def tune_contexts(chunks: torch.Tensor) -> torch.Tensor:
    """[B, n, 3]: at position i, the context of chunks 0..i-1 (chunk_context [B, n, 3] of each chunk)."""
    so_far = torch.tensor([0, 128, -1], device=chunks.device).expand(chunks.shape[0], 3)
    out = []
    for i in range(chunks.shape[1]):
        out.append(so_far)
        so_far = widen(so_far, chunks[:, i])
    return torch.stack(out, 1)


def scale_bins(tune_pcs: torch.Tensor, chunk_pcs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """[N, K]: how many pitch classes each of K chunks (their 12-bit masks [K]) adds outside the best
    diatonic scale of each of N tunes' pitch classes so far [N]: 0, 1, or 2 for 2 or more (`table`:
    outside_scale())."""
    return (table[tune_pcs[:, None] | chunk_pcs[None]] - table[tune_pcs][:, None]).clamp(0, SCALE_BINS - 1)


def span_bins(tune_range: torch.Tensor, chunk_range: torch.Tensor) -> torch.Tensor:
    """[N, K]: the bin (SPAN_EDGES) of how far each of K chunks (lowest and highest pitch [K, 2]; 128, -1
    without notes) widens each of N tunes' range so far [N, 2]; SPAN_BINS - 1 where a tune has no note
    yet. A chunk without notes widens nothing."""
    lo, hi = tune_range[:, :1], tune_range[:, 1:]
    wider = (chunk_range[None, :, 1] - hi).clamp(min=0) + (lo - chunk_range[None, :, 0]).clamp(min=0)
    wider = torch.where(chunk_range[None, :, 1] < 0, 0, wider)
    span = torch.bucketize(wider, torch.tensor(SPAN_EDGES, device=wider.device), right=True)
    return torch.where(hi < 0, SPAN_BINS - 1, span)


def recent_coords(zn: torch.Tensor, lags: int) -> torch.Tensor:
    """[B, n, lags, Z]: at position i, the coordinates zn [B, n, Z] of the chunks i-1 ... i-lags (zeros
    before the first)."""
    padded = torch.cat([zn.new_zeros(zn.shape[0], lags, zn.shape[2]), zn], 1)
    n = zn.shape[1]
    return torch.stack([padded[:, lags - lag : lags - lag + n] for lag in range(1, lags + 1)], 2)


FIGURE_NOTES = 4  # a figure: the intervals between 4 consecutive notes of a chunk
FIGURE_CLIP = 12  # semitones: larger intervals count as an octave
# share of a chunk's figures the tune has played: 0, (0, 1/4], (1/4, 1/2], (1/2, 3/4], (3/4, 1), 1; the
# last bin: the chunk has no figure (fewer than 4 notes), or the tune has none yet
FIGURE_EDGES = (1e-6, 0.25 + 1e-6, 0.5 + 1e-6, 0.75 + 1e-6, 1 - 1e-6)
FIGURE_BINS = len(FIGURE_EDGES) + 2
FIGURE_COUNTS = WINDOW - FIGURE_NOTES + 2  # 0 .. the most figures a chunk can have


def chunk_figures(windows: torch.Tensor) -> torch.Tensor:
    """[..., steps - 3]: the ids of the figures of windows [..., steps], one per run of 4 consecutive
    notes (its 3 intervals, each clipped to +-FIGURE_CLIP, in base 2 * FIGURE_CLIP + 1), -1 where
    there is none. A repeated figure has its id more than once."""
    w = windows.long()
    shape = w.shape
    w = w.reshape(-1, shape[-1])
    on = w >= FIRST_NOTE
    # the note-ons moved to the front, in order (a stable sort of "is not a note-on")
    order = torch.sort((~on).byte(), dim=-1, stable=True).indices
    pitch = w.gather(-1, order)
    count = on.sum(-1, keepdim=True)
    base = 2 * FIGURE_CLIP + 1
    iv = (pitch[:, 1:] - pitch[:, :-1]).clamp(-FIGURE_CLIP, FIGURE_CLIP) + FIGURE_CLIP
    k = FIGURE_NOTES - 1
    ids = sum(iv[:, j : iv.shape[1] - k + 1 + j] * base ** (k - 1 - j) for j in range(k))
    last = torch.arange(ids.shape[1], device=w.device)[None] + k  # the figure's last note
    ids = torch.where(last < count, ids, -1)
    return ids.reshape(*shape[:-1], ids.shape[-1])


def figure_bins(played: torch.Tensor, figures: torch.Tensor, tune_has: torch.Tensor) -> torch.Tensor:
    """[N, K]: the bin (FIGURE_EDGES) of the share of each of K chunks' distinct figures (`figures` [K]
    of them) that each of N tunes has played (`played` [N, K] of them); the last bin where a chunk has
    none or a tune has none yet (`tune_has` [N])."""
    share = played / figures.clamp(min=1)[None]
    b = torch.bucketize(share.contiguous(), torch.tensor(FIGURE_EDGES, device=share.device, dtype=share.dtype))
    return torch.where((figures[None] == 0) | ~tune_has[:, None], FIGURE_BINS - 1, b)


@dataclass(frozen=True)
class TuneSoFar:
    """What a codebook head scores a new chunk against beside the state, for rows [...] (None where
    the prior has no such term): the previous chunk's last pitch `last` [...] (boundary_bins), the
    tune's context `context` [..., 3] (context_terms, `tune_contexts`), the coordinates of the chunks
    1..lags back `recent` [..., lags, Z] (similar_lags; zeros before the first), the figures the
    tune has played `figures` [..., V] (figure_terms, `LatentPrior.figure_hot`), and, what the tune
    will be, whether its form repeats this chunk as its last `closes` [...] bool (edge_terms,
    `closing_chunks`; None: not known)."""

    last: torch.Tensor | None = None
    context: torch.Tensor | None = None
    recent: torch.Tensor | None = None
    figures: torch.Tensor | None = None
    closes: torch.Tensor | None = None

    def __getitem__(self, index: Any) -> TuneSoFar:
        parts = (self.last, self.context, self.recent, self.figures, self.closes)
        return TuneSoFar(*(None if t is None else t[index] for t in parts))


class LatentPrior(nn.Module):
    # buffers of a codebook prior (declared for type checkers; registered in __init__)
    code_coords: torch.Tensor
    code_windows: torch.Tensor
    code_meters: torch.Tensor
    code_bias: nn.Parameter

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        d, K = cfg.d_model, cfg.mixtures
        Z = cfg.pca_dim or cfg.z_dim  # the modelled coordinates
        # z -> coordinates: ((z - z_mean) @ z_basis) / z_std. The 2-bar VAE uses about 64 of its 256
        # dimensions (the top 64 principal components hold 99.7 % of the latents' variance; the rest
        # sit at the prior's mean), so the mixture models those and a drawn latent is
        # z_mean + (c * z_std) @ z_basis.T. Copies and given chunks keep their full latent.
        self.register_buffer("z_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("z_basis", torch.eye(cfg.z_dim)[:, :Z].clone())
        self.register_buffer("z_std", torch.ones(Z))
        self.z_in = nn.Linear(Z, d)
        self.tie_in = nn.Embedding(2, d)
        self.bos = nn.Parameter(torch.zeros(d))
        self.pos = nn.Embedding(cfg.max_chunks, d)
        self.remaining = nn.Embedding(cfg.max_chunks + 1, d)
        self.meter = nn.Embedding(len(METERS) + 1, d)
        self.length = nn.Embedding(cfg.max_chunks + 1, d)
        self.ends = nn.Embedding(2, d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.new_logit = nn.Linear(d, 1)
        # folk tunes repeat at fixed distances (2, 4, 8 chunks back); a learned bias per distance lets
        # the pointer say so directly (without it the copy NLL rose while the mixture's fell)
        self.copy_distance = nn.Embedding(cfg.max_chunks + 1, 1)
        nn.init.zeros_(self.copy_distance.weight)
        self.tie_out = nn.Linear(d, 1)
        if cfg.codebook:
            # code k is a real chunk: its standardized coordinates (what the head scores and what a
            # drawn code's latent is rebuilt from) and its 32 steps (what it sounds like, exactly)
            self.register_buffer("code_coords", torch.zeros(cfg.codebook, Z))
            self.register_buffer("code_windows", torch.zeros(cfg.codebook, WINDOW, dtype=torch.int8))
            # the meters of the training tunes each chunk occurs in: a tune is drawn from its meter's chunks
            self.register_buffer("code_meters", torch.zeros(cfg.codebook, len(METERS) + 1, dtype=torch.bool))
            # logit_k = q(h) . coords_k + r(h) . embed_k + bias_k: similar chunks share what the head
            # learns through their coordinates, and the embedding and bias learn what is particular
            self.code_query = nn.Linear(d, Z)
            self.code_embed_query = nn.Linear(d, cfg.code_embed_dim)
            self.code_embed = nn.Embedding(cfg.codebook, cfg.code_embed_dim)
            nn.init.normal_(self.code_embed.weight, std=0.01)
            self.code_bias = nn.Parameter(torch.zeros(cfg.codebook))
            if cfg.boundary_bins:
                # how well a chunk follows the previous one, by the interval across the boundary: zero
                # at the start, so an untrained term changes nothing
                self.boundary = nn.Linear(d, 2 * cfg.boundary_bins + 2)
                nn.init.zeros_(self.boundary.weight)
                nn.init.zeros_(self.boundary.bias)
            if cfg.similar_lags:
                self.similar = nn.Linear(d, cfg.similar_lags)
                nn.init.zeros_(self.similar.weight)
                nn.init.zeros_(self.similar.bias)
            if cfg.context_terms:
                # teacher-forced on validation tunes the head gave 0.106 of its mass to chunks that add a
                # pitch class outside the tune's scale (0.044 of the chunks do) and 0.124 to chunks that
                # widen its range by 5 semitones or more (0.071): a chunk's fit is a property of a set
                # of pitches, which a dot product with the state does not express. Zero at the start.
                self.context = nn.Linear(d, SCALE_BINS + SPAN_BINS)
                nn.init.zeros_(self.context.weight)
                nn.init.zeros_(self.context.bias)
            if cfg.figure_terms:
                # teacher-forced on validation tunes the head gave 0.525 of its mass to chunks none of
                # whose figures the tune has played (real chunks: 0.379) and 0.036 to chunks that share
                # more than half of them (0.244): real tunes come back to their figures, transposed and
                # varied, which a dot product with the state does not see. Zero at the start.
                self.figure = nn.Linear(d, FIGURE_BINS)
                nn.init.zeros_(self.figure.weight)
                nn.init.zeros_(self.figure.bias)
            if cfg.edge_terms:
                # sampled 16-bar tunes that end a tune ended on C or A (the key-normalized tonics) 0.60
                # of the time, real ones 0.80, and began on C, E, G or A 0.79 against 0.92: which
                # pitch a chunk starts and ends on is not a direction in the latent space. Zero at
                # the start.
                self.edge = nn.Linear(d, 2 * EDGE_BINS)
                nn.init.zeros_(self.edge.weight)
                nn.init.zeros_(self.edge.bias)
                # a tune whose form ends on a repeat ends on a chunk drawn earlier, by a state that did
                # not know it would close the tune: such endings were on C or A 0.42-0.47 of the time
                # where drawn last ones were 0.56 and real ones 0.80
                self.edge_close = nn.Parameter(torch.zeros(EDGE_BINS))
            if cfg.rhythm_terms:
                # teacher-forced on validation tunes the head gave 0.146 of its mass at a new 4/4 chunk
                # to chunks with a dotted eighth (real: 0.222) and 0.206 in 2/4 (0.286), and drew 9.3
                # notes a 4/4 chunk (10.3): a dotted or a busy chunk is one of many rare codes, each
                # with little of the head's mass, while a tune keeps its rhythm. Zero at the start.
                self.rhythm = nn.Linear(d, RHYTHM_DIMS)
                nn.init.zeros_(self.rhythm.weight)
                nn.init.zeros_(self.rhythm.bias)
            if cfg.pitch_terms:
                # in 16-bar 4/4 samples the tonic took 0.18 of the sounding time, in real windows 0.22,
                # and the 32-bar pitch-class histograms overlapped real ones least of all features
                # (0.87 over six test draws): how a chunk spends its time among pitch classes is a
                # sum over its steps, not a direction of the latent space. Zero at the start.
                self.pitch = nn.Linear(d, 12)
                nn.init.zeros_(self.pitch.weight)
                nn.init.zeros_(self.pitch.bias)
            # what is derived from the codebook (its latents, pitches, per-meter sets and rows), by key:
            # (the versions of the tensors it was derived from, the value); see _derived
            self._derived_cache: dict[object, tuple[object, Any]] = {}
        else:
            self.mix = nn.Linear(d, K)
            self.mu = nn.Linear(d, K * Z)
            self.log_sigma = nn.Linear(d, K * Z)

    # ---- network -------------------------------------------------------------------------------
    def hidden(
        self, zn: torch.Tensor, ties: torch.Tensor, meter: torch.Tensor, length: torch.Tensor, ends: torch.Tensor
    ) -> torch.Tensor:
        """Standardized latents [B, n, Z] (only chunks < i matter at position i) -> states [B, n, d]."""
        B, n, _ = zn.shape
        prev = self.z_in(zn[:, :-1]) + self.tie_in(ties[:, :-1].long())
        x = torch.cat([self.bos.expand(B, 1, -1), prev], 1)
        x = x + self._position(torch.arange(n, device=zn.device), meter, length, ends)
        mask = torch.full((n, n), float("-inf"), device=zn.device).triu(1)
        return self.norm(self.blocks(x, mask=mask, is_causal=True))

    def _position(
        self, pos: torch.Tensor, meter: torch.Tensor, length: torch.Tensor, ends: torch.Tensor
    ) -> torch.Tensor:
        """[B, len(pos), d]: what every input adds at these positions (where it is, the tune's meter,
        length and "ends the tune", and how many chunks remain)."""
        cond = self.meter(meter) + self.length(length) + self.ends(ends.long())
        return self.pos(pos)[None] + cond[:, None] + self.remaining((length[:, None] - pos[None]).clamp(0))

    def next_hidden(
        self,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        zn_prev: torch.Tensor | None,
        tie_prev: torch.Tensor | None,
        meter: torch.Tensor,
        length: torch.Tensor,
        ends: torch.Tensor,
    ) -> torch.Tensor:
        """The state [B, d] at the next position (0 with an empty `cache`, else one past the positions it
        holds), given the chunk before it (zn_prev [B, Z] standardized, tie_prev [B]; None at position
        0): what `hidden` gives there, from the layers' cached keys and values (appended to `cache`, one
        (keys, values) per layer) instead of again over the whole prefix. Sampling only (no dropout):
        a 32-bar tune took 67 ms instead of 55 on one thread when every chunk ran the whole prefix again."""
        i = cache[0][0].shape[2] if cache else 0
        B = len(meter)
        if zn_prev is None or tie_prev is None:
            x = self.bos.expand(B, -1)
        else:
            x = self.z_in(zn_prev) + self.tie_in(tie_prev.long())
        x = x + self._position(torch.tensor([i], device=x.device), meter, length, ends)[:, 0]
        for k, layer in enumerate(self.blocks.layers):
            attn = layer.self_attn
            heads = attn.num_heads
            q, key, value = (
                F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).view(B, 3, heads, -1).unbind(1)
            )
            keys, values = key[:, :, None], value[:, :, None]  # [B, heads, positions, d / heads]
            if len(cache) > k:
                keys, values = torch.cat([cache[k][0], keys], 2), torch.cat([cache[k][1], values], 2)
                cache[k] = (keys, values)
            else:
                cache.append((keys, values))
            att = F.scaled_dot_product_attention(q[:, :, None], keys, values)[:, :, 0]
            x = x + attn.out_proj(att.reshape(B, -1))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return self.norm(x)

    def pointer(self, h: torch.Tensor) -> torch.Tensor:
        """Pointer logits [B, n, 1 + n] from states [B, n, d]: index 0 = new, 1 + j = copy chunk j < i."""
        n = h.shape[1]
        # chunk j is first seen by the state at position j + 1: that state is the key for "copy j"
        keys = self.key(torch.cat([h[:, 1:], h[:, -1:]], 1))
        ptr = self.query(h) @ keys.transpose(1, 2) / math.sqrt(h.shape[-1])
        pos = torch.arange(n, device=h.device)
        ptr = ptr + self.copy_distance((pos[:, None] - pos[None]).clamp(0, self.cfg.max_chunks))[..., 0]
        allowed = torch.ones(n, n, dtype=torch.bool, device=h.device).tril(-1)
        return torch.cat([self.new_logit(h), ptr.masked_fill(~allowed, float("-inf"))], -1)

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """A mixture prior's head per state [..., d]: the mixture's logits, means and log std of the
        standardized latent (a codebook prior scores codes with `code_log_prob`)."""
        K, Z = self.cfg.mixtures, self.cfg.pca_dim or self.cfg.z_dim
        return {
            "mix": self.mix(h),
            "mu": self.mu(h).unflatten(-1, (K, Z)),
            "log_sigma": self.log_sigma(h).unflatten(-1, (K, Z)).clamp(-7.0, 2.0),
        }

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.z_mean) @ self.z_basis) / self.z_std

    def unstandardize(self, c: torch.Tensor) -> torch.Tensor:
        return self.z_mean + (c * self.z_std) @ self.z_basis.T

    def meter_codes(self, meter: int) -> torch.Tensor:
        """The codes a tune of this meter index draws from: those seen in training tunes of that meter
        (all codes when none were). Unrestricted, a third of the chunks drawn for a 4/4, 6/8 or 3/4
        tune came from tunes of other meters (a 3/4 chunk in a 6/8 jig): 66,000 small
        probabilities add up."""
        return self._meter_index(meter)[0]

    def _derived(self, key: object, sources: tuple[torch.Tensor, ...], build: Callable[[], Any]) -> Any:
        """`build()`, kept under `key` until any of the tensors it is derived from changes in place
        (a new version): the codebook's latents, pitches, per-meter sets and rows are built once,
        not at every chunk drawn."""
        version = tuple(t._version for t in sources)
        hit = self._derived_cache.get(key)
        if hit is None or hit[0] != version:
            hit = (version, build())
            self._derived_cache[key] = hit
        return hit[1]

    def _meter_index(self, meter: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the meter's codes, every code's position among them or -1)."""

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            allowed = torch.nonzero(self.code_meters[:, meter])[:, 0]
            if not len(allowed):
                allowed = torch.arange(self.cfg.codebook, device=allowed.device)
            position = torch.full((self.cfg.codebook,), -1, dtype=torch.long, device=allowed.device)
            position[allowed] = torch.arange(len(allowed), device=allowed.device)
            return allowed, position

        return self._derived(("meter", meter), (self.code_meters,), build)

    def code_log_prob(
        self,
        h: torch.Tensor,
        codes: torch.Tensor,
        meter: torch.Tensor,
        need: torch.Tensor,
        tune: TuneSoFar | None = None,
    ) -> torch.Tensor:
        """log p(code) [B, n] at the positions `need` [B, n] (0 elsewhere), from states [B, n, d].

        Normalized over the tune's meter's codes when the config says so (`meter_softmax`, what the
        sampler draws from); a code outside its meter's set (a chunk of a tune the codebook does not
        hold) is scored as the meter's code nearest to it. Only the needed positions are scored: the
        66,000-way logits are most of a training step. `tune` [B, n]: what the tune was before each
        position (`tune_so_far`)."""
        out = torch.zeros(codes.shape, device=h.device)
        for m in meter.unique().tolist():
            rows = (meter == m)[:, None] & need
            if not rows.any():
                continue
            target = codes[rows].long()
            so_far = None if tune is None else tune[rows]
            if self.cfg.meter_softmax:
                sub, position = self._meter_index(m)
                pos = position[target]
                outside = pos < 0
                if outside.any():
                    near = torch.cdist(self.code_coords[target[outside]].float(), self.code_coords[sub].float())
                    pos[outside] = near.argmin(-1)
                logits = self.code_logits(h[rows], m, so_far)
            else:
                position = None  # every code is its own position
                pos, logits = target, self.code_logits(h[rows], None, so_far)
            # as when sampling, a new chunk is none of the codes of the chunks before it (those are said
            # with the pointer), so their logits are left out, all but the target's (a chunk the
            # codebook does not hold may be scored as the code an earlier chunk is)
            r, i = torch.nonzero(rows, as_tuple=True)
            prior_codes = codes[r].long()  # [N, n]: every chunk of the row's tune
            before_i = torch.arange(codes.shape[1], device=h.device)[None] < i[:, None]
            at = position[prior_codes] if position is not None else prior_codes
            drop = before_i & (at >= 0) & (at != pos[:, None])
            row, col = torch.nonzero(drop, as_tuple=True)
            logits = logits.index_put((row, at[row, col]), torch.tensor(float("-inf"), device=h.device))
            out[rows] = logits.log_softmax(-1).gather(-1, pos[:, None])[:, 0]
        return out

    def draw_codes(
        self,
        h: torch.Tensor,
        meter: torch.Tensor,
        temperature: float,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        exclude: torch.Tensor | None = None,
        tune: TuneSoFar | None = None,
    ) -> torch.Tensor:
        """One code per state [B, d], each among its meter's codes: the head's logits are computed for
        those codes only (a meter has 1,000-17,000 of the 66,000), which is also what makes a batch
        fast. `exclude` [B, m]: codes a row may not draw (-1: none), the tune's earlier chunks. `tune`
        [B]: what each tune is so far (`TuneSoFar`)."""
        out = torch.empty(len(h), dtype=torch.long, device=h.device)
        tune = TuneSoFar() if tune is None else tune
        for m in meter.unique().tolist():
            rows = meter == m
            sub, position = self._meter_index(m)
            here, barred = tune[rows], None if exclude is None else exclude[rows]
            # rows alike to the bit in state, tune so far and excluded codes (every tune's first chunk,
            # tunes that began alike) are scored and cut to their nucleus once, from one of them: the
            # rows made unique (small integers are exact in floats). The figures played enter as a
            # fingerprint (how many, and a weighted sum), not their thousands of columns: rows alike in
            # all else came from the same chunks
            fingerprint = None
            if here.figures is not None:
                weights = torch.arange(1, here.figures.shape[1] + 1, device=h.device, dtype=here.figures.dtype).sqrt()
                fingerprint = torch.stack([here.figures.sum(-1), here.figures @ weights], -1)
            parts = (h[rows], here.last, here.context, here.recent, barred, fingerprint, here.closes)
            flat = [t.reshape(int(rows.sum()), -1).to(h.dtype) for t in parts if t is not None]
            key, take = torch.unique(torch.cat(flat, 1), dim=0, return_inverse=True)
            first = torch.zeros(len(key), dtype=torch.long, device=h.device)
            first[take] = torch.arange(len(take), device=h.device)  # one row of each
            logits = self.code_logits(h[rows][first], m, here[first])
            if barred is not None and barred.shape[1]:
                codes = barred[first]
                pos = torch.where(codes >= 0, position[codes.clamp(min=0)], -1)
                hit = pos >= 0
                logits[torch.nonzero(hit)[:, 0], pos[hit]] = float("-inf")
            out[rows] = sub[sample_codes(logits, temperature, top_p, generator, take)]
        return out

    def code_logits(
        self,
        h: torch.Tensor,
        meter: int | None = None,
        tune: TuneSoFar | None = None,
    ) -> torch.Tensor:
        """Logits [N, K] of every code (or of the meter's codes, `meter_codes`) from states [N, d]:
        q(h) . coords_k + r(h) . embed_k + bias_k, and, from what each tune is so far (`tune` [N],
        `TuneSoFar`): plus (boundary_bins) s(h)[bin of the interval from the previous chunk's last
        pitch to code k's first], plus (context_terms) c(h)[scale bin] + c(h)[span bin] of each code
        after the tune's context (`scale_bins`, `span_bins`), minus (similar_lags) w_l(h) |coords_k -
        recent_l|^2 / Z for the coordinates of the chunks 1..lags back (all zeros: none; a chunk's
        standardized coordinates are never all zero), plus (figure_terms) f(h)[bin of the share of
        code k's figures the tune has played (`figure_bins`)], plus (edge_terms) e(h)[pitch class of
        code k's first note] + e(h)[of its last], and edge_close[of its last] for the rows whose form
        repeats this chunk as the tune's ending (`tune.closes`), plus (rhythm_terms) m(h) . rhythm_k,
        code k's `chunk_rhythm`, plus (pitch_terms) p(h) . pcs_k, code k's `chunk_pitch_classes`."""
        tune = TuneSoFar() if tune is None else tune
        prev_last, context, recent, figures = tune.last, tune.context, tune.recent, tune.figures
        table, bias, first_col, edge_cols = self._code_table(meter)
        query = self.code_query(h)
        pull = None
        if self.cfg.similar_lags and recent is not None:
            # -w |c_k - r|^2 = 2 w r . c_k - w |c_k|^2 - w |r|^2: the first joins the query, the second is
            # one column per code, the third is the same for every code. Divided by Z: the weight is per
            # unit of mean squared distance per coordinate (so Adam's steps suit it)
            w = self.similar(h)[:, : recent.shape[1]] * (recent != 0).any(-1) / recent.shape[-1]
            query = query + 2 * (w[..., None] * recent).sum(1)
            pull = w.sum(1)
        # one product with the codes' [coordinates | embedding | rhythm | pitch classes] rows: two took
        # 2.7 times as long
        parts = [query, self.code_embed_query(h)]
        parts += [self.rhythm(h)] if self.cfg.rhythm_terms else []
        parts += [self.pitch(h)] if self.cfg.pitch_terms else []
        logits = torch.addmm(bias, torch.cat(parts, -1), table.T)
        if pull is not None:
            logits = logits - pull[:, None] * table[:, : query.shape[1]].pow(2).sum(-1)[None]
        if self.cfg.boundary_bins and prev_last is not None:
            # the term for every possible first pitch (column 0: no note, p + 1: pitch p), then one
            # column per code: an [N, 129] gather instead of binning N x 17,000 intervals
            pitches = torch.arange(-1, 128, device=h.device)
            per_pitch = self.boundary(h).gather(
                -1, interval_bins(pitches[None], prev_last[:, None], self.cfg.boundary_bins)
            )
            logits = logits + per_pitch.index_select(-1, first_col)
        if self.cfg.context_terms and context is not None:
            # the bins depend on a code only through its pitch classes and its range, which far fewer
            # distinct values than codes have: binned per distinct value, then spread to the codes
            pcs, pcs_of, ranges, range_of = self._context_groups(meter)
            w = self.context(h)
            scale = w[:, :SCALE_BINS].gather(-1, scale_bins(context[:, 0], pcs, self._outside_scale()))
            span = w[:, SCALE_BINS:].gather(-1, span_bins(context[:, 1:], ranges))
            logits = logits + scale.index_select(-1, pcs_of) + span.index_select(-1, range_of)
        if self.cfg.figure_terms and figures is not None:
            # a bin depends only on (c: how many figures a code has, o: how many of them the tune has
            # played), at most 30 x 30 pairs: the weights per pair, then one gather at c * 30 + o
            # (binning N x 17,000 shares took 4 times as long as the rest of the logits)
            w = self.figure(h)
            per_pair = w[:, self.figure_pair_bins()]
            per_pair = torch.where(figures.sum(-1, keepdim=True) > 0, per_pair, w[:, -1:])
            logits = logits + per_pair.gather(-1, self.figure_pairs_played(meter, figures))
        if self.cfg.edge_terms:
            w = self.edge(h)
            logits = logits + w.index_select(-1, edge_cols[:, 0]) + w.index_select(-1, edge_cols[:, 1])
            if tune.closes is not None:
                closing = self.edge_close.index_select(0, edge_cols[:, 1] - EDGE_BINS)
                logits = logits + tune.closes[:, None].to(logits.dtype) * closing[None]
        return logits

    def figure_pairs_played(self, meter: int | None, figures: torch.Tensor) -> torch.Tensor:
        """[N, K] long: c * FIGURE_COUNTS + o for each of all or a meter's codes, c its count of distinct
        figures and o how many of them each of N tunes has played (`figures` [N, V], `figure_hot`): one
        sparse product, the table's last column holding c * FIGURE_COUNTS."""
        table = self._figure_table(meter)
        played = torch.cat([figures, figures.new_ones(len(figures), 1)], 1).to(table.dtype)
        return (table @ played.T).to(torch.int32).T.contiguous().long()  # the int32 copy is the fast one

    def figure_vocab(self) -> torch.Tensor:
        """The sorted ids of the figures the codes have (a tune's other figures match no code)."""

        def build() -> torch.Tensor:
            ids = chunk_figures(self.code_windows)
            return torch.unique(ids[ids >= 0])

        return self._derived("figure_vocab", (self.code_windows,), build)

    def _figure_columns(self, windows: torch.Tensor) -> torch.Tensor:
        """[..., steps - 3]: the vocabulary column of each figure of windows [..., steps], V for none."""
        vocab = self.figure_vocab()
        ids = chunk_figures(windows.to(vocab.device))
        if not len(vocab):  # no code has a figure
            return torch.zeros_like(ids)
        at = torch.searchsorted(vocab, ids.clamp(min=0)).clamp(max=len(vocab) - 1)
        return torch.where((ids >= 0) & (vocab[at] == ids), at, len(vocab))

    def figure_hot(self, windows: torch.Tensor) -> torch.Tensor:
        """[..., V] float: which of the vocabulary's figures each window [..., steps] has."""
        at = self._figure_columns(windows)
        hot = torch.zeros(*at.shape[:-1], len(self.figure_vocab()) + 1, device=at.device)
        return hot.scatter_(-1, at, 1.0)[..., :-1]

    def _figure_table(self, meter: int | None) -> torch.Tensor:
        """Sparse CSR [K, V + 1]: 1 at each figure each of all or a meter's codes has, and in the last
        column how many distinct it has, times FIGURE_COUNTS (code_logits' lookup)."""

        def build() -> torch.Tensor:
            windows = self.code_windows if meter is None else self.code_windows[self.meter_codes(meter)]
            at = self._figure_columns(windows)
            V = len(self.figure_vocab())
            row, col = torch.nonzero(at < V, as_tuple=True)
            pairs = torch.unique(torch.stack([row, at[row, col]]), dim=1)  # a figure twice in a chunk counts once
            ones = torch.ones(pairs.shape[1], device=at.device)
            count = torch.zeros(len(at), device=at.device).index_add_(0, pairs[0], ones)
            every = torch.arange(len(at), device=at.device)
            pairs = torch.cat([pairs, torch.stack([every, torch.full_like(every, V)])], 1)
            values = torch.cat([ones, count * FIGURE_COUNTS])
            table = torch.sparse_coo_tensor(pairs, values, (len(at), V + 1), check_invariants=True).coalesce()
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                return table.to_sparse_csr()

        return self._derived(("figures", meter), (self.code_windows, self.code_meters), build)

    def figure_pair_bins(self) -> torch.Tensor:
        """[FIGURE_COUNTS ** 2]: the bin of (a code has c figures, the tune has played o of them) at
        c * FIGURE_COUNTS + o."""

        def build() -> torch.Tensor:
            c, o = torch.meshgrid(torch.arange(FIGURE_COUNTS), torch.arange(FIGURE_COUNTS), indexing="ij")
            return figure_bins(o.reshape(1, -1).float(), c.reshape(-1), torch.ones(1, dtype=torch.bool))[0]

        return self._derived("figure_pairs", (), build).to(self.z_mean.device)

    def _outside_scale(self) -> torch.Tensor:
        return self._derived("outside_scale", (), outside_scale)

    def code_contexts(self) -> torch.Tensor:
        """[codebook, 3] every code's chunk_context."""
        return self._derived("contexts", (self.code_windows,), lambda: chunk_context(self.code_windows))

    def _context_groups(self, meter: int | None) -> tuple[torch.Tensor, ...]:
        """The codes' (of all or of a meter's) distinct pitch-class masks, each code's among them, their
        distinct (lowest, highest) pitches and each code's among them."""

        def build() -> tuple[torch.Tensor, ...]:
            ctx = self.code_contexts() if meter is None else self.code_contexts()[self.meter_codes(meter)]
            pcs, pcs_of = torch.unique(ctx[:, 0], return_inverse=True)
            ranges, range_of = torch.unique(ctx[:, 1:], dim=0, return_inverse=True)
            return pcs, pcs_of, ranges, range_of

        return self._derived(("contexts", meter), (self.code_windows, self.code_meters), build)

    def _code_table(self, meter: int | None) -> tuple[torch.Tensor, ...]:
        """([coordinates | embedding | rhythm | pitch classes (those terms)], bias, first-pitch
        column, edge columns [K, 2]: the first and the last note's pitch-class bin, EDGE_BINS apart) of
        all codes or a meter's. While sampling (no gradients) a meter's rows are gathered once and kept
        until any of them changes: gathering 17,000 codes' rows at every chunk was half of a tune's
        sampling time."""
        params = (self.code_coords, self.code_embed.weight, self.code_bias)

        def table(codes: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            first, last = self.code_edges()
            first_col = (first + 1).clamp(0, 128)  # columns of MIDI pitches -1 ("no note")..127
            edge_cols = torch.stack([edge_bins(first), EDGE_BINS + edge_bins(last)], -1)
            rows = lambda t: t if codes is None else t[codes]  # noqa: E731
            parts = [self.code_coords, self.code_embed.weight]
            parts += [self.code_rhythms()] if self.cfg.rhythm_terms else []
            parts += [self.code_pitch_classes()] if self.cfg.pitch_terms else []
            return torch.cat([rows(t) for t in parts], -1), *map(rows, (self.code_bias, first_col, edge_cols))

        if meter is None:
            return table()
        codes = self.meter_codes(meter)
        if torch.is_grad_enabled():
            return table(codes)
        return self._derived(("rows", meter), (*params, self.code_windows, self.code_meters), lambda: table(codes))

    def code_rhythms(self) -> torch.Tensor:
        """[codebook, RHYTHM_DIMS] every code's chunk_rhythm (cached until the codes' steps change)."""
        return self._derived("rhythms", (self.code_windows,), lambda: chunk_rhythm(self.code_windows.long()))

    def code_pitch_classes(self) -> torch.Tensor:
        """[codebook, 12] every code's chunk_pitch_classes (cached until the codes' steps change)."""
        return self._derived(
            "pitch_classes", (self.code_windows,), lambda: chunk_pitch_classes(self.code_windows.long())
        )

    def code_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, last) pitch of every code's chunk, from its steps (cached until they change)."""
        return self._derived("edges", (self.code_windows,), lambda: edge_pitches(self.code_windows))

    def code_latents(self) -> torch.Tensor:
        """[codebook, z_dim] the latents drawn codes get: rebuilt from their coordinates once (and again
        only if the coordinates change), so equal codes are bit-identical latents."""
        return self._derived("latents", (self.code_coords,), lambda: self.unstandardize(self.code_coords.float()))

    def nearest_code(self, z: torch.Tensor) -> torch.Tensor:
        """Each latent's [..., z_dim] code: the nearest code in the standardized coordinates."""
        zn = self.standardize(z.float())
        cn = self.code_coords
        flat = zn.reshape(-1, zn.shape[-1])
        parts = [torch.cdist(flat[i : i + 4096], cn).argmin(-1) for i in range(0, len(flat), 4096)]
        return torch.cat(parts or [torch.zeros(0, dtype=torch.long)]).reshape(zn.shape[:-1])

    def fit_standardization(self, z: torch.Tensor) -> None:
        """Mean, principal axes and their scales from training latents [N, z_dim]."""
        z = z.float()
        self.z_mean.copy_(z.mean(0))
        zc = z - self.z_mean
        P = self.z_basis.shape[1]
        if z.shape[1] > P:
            _, _, v = torch.linalg.svd(zc[:: max(1, len(zc) // 50_000)], full_matrices=False)
            self.z_basis.copy_(v[:P].T)
        self.z_std.copy_((zc @ self.z_basis).std(0).clamp(min=1e-3))

    def tune_so_far(
        self,
        zn: torch.Tensor,
        windows: torch.Tensor,
        valid: torch.Tensor,
        every: bool = False,
        copies: torch.Tensor | None = None,
        ends: torch.Tensor | None = None,
    ) -> TuneSoFar:
        """[B, n]: before each position of tunes of chunks with coordinates zn [B, n, Z] and steps
        `windows` [B, n, steps] (`valid` [B, n]), what the tune was (teacher forcing: from its own
        chunks), for the terms this prior has (`every`: also the pitch, context and figure parts of
        those it has not, for measuring them; code_logits leaves those out); with the tunes' repeats
        `copies` [B, n, n] and `ends` [B], also which chunk closes each (`closing_chunks`)."""
        last = context = recent = played = None
        if self.cfg.boundary_bins or every:
            pitch = edge_pitches(windows)[1]
            last = torch.cat([torch.full_like(pitch[:, :1], -1), pitch[:, :-1]], 1)
        if self.cfg.context_terms or every:
            context = tune_contexts(chunk_context(windows))
        if self.cfg.similar_lags:
            recent = recent_coords(zn, self.cfg.similar_lags)
        if self.cfg.figure_terms or every:
            hot = self.figure_hot(windows) * valid[..., None]
            played = (hot.cumsum(1) - hot).clamp(max=1)  # the figures of chunks 0..i-1
        closes = None
        if (self.cfg.edge_terms or every) and copies is not None and ends is not None:
            closes = closing_chunks(copies, valid, ends)
        return TuneSoFar(last, context, recent, played, closes)

    # ---- likelihood ----------------------------------------------------------------------------
    def log_likelihood(
        self,
        z: torch.Tensor,
        ties: torch.Tensor,
        valid: torch.Tensor,
        meter: torch.Tensor,
        length: torch.Tensor,
        ends: torch.Tensor,
        copies: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        windows: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sequence log-likelihood terms (nats), summed over the valid chunks: [B] each.

        `copies` [B, n, n]: chunk i repeats chunk j; by default bit-identical latents. `codes` [B, n]
        (codebook priors): each chunk's code; by default the nearest code to its latent. `windows`
        [B, n, steps] (boundary_bins, context_terms): the chunks' steps, for their pitches; by default
        their nearest codes'."""
        zn = self.standardize(z.float())
        h = self.hidden(zn, ties, meter, length, ends)
        out = {"pointer": self.pointer(h), "tie": self.tie_out(h)[..., 0]}
        copies = copy_targets(z, valid) if copies is None else copies
        is_copy = copies.any(-1)
        logp_ptr = out["pointer"].log_softmax(-1)
        # finite fill, not -inf: a row with no copy target must not put NaN into the gradient
        lp_copy = torch.logsumexp(logp_ptr[..., 1:].masked_fill(~copies, -1e9), -1)
        if self.cfg.codebook:
            codes = self.nearest_code(z) if codes is None else codes.clamp(min=0)
            steps = self.code_windows[codes] if windows is None else windows.to(z.device)
            tune = self.tune_so_far(zn, steps, valid, copies=copies, ends=ends)
            lp_chunk = self.code_log_prob(h, codes, meter, valid & ~is_copy, tune)
        else:
            out.update(self.heads(h))
            comp = (
                -0.5 * ((zn[:, :, None] - out["mu"]) / out["log_sigma"].exp()).pow(2)
                - out["log_sigma"]
                - 0.5 * math.log(2 * math.pi)
            ).sum(-1)
            lp_chunk = torch.logsumexp(out["mix"].log_softmax(-1) + comp, -1)
        lp_new = logp_ptr[..., 0] + lp_chunk
        lp_z = torch.where(is_copy, lp_copy, lp_new)
        tie_mask = valid.clone()
        tie_mask[:, 0] = False
        lp_tie = -F.binary_cross_entropy_with_logits(out["tie"], ties.float(), reduction="none")
        return {
            "z": (lp_z * valid).sum(1),
            "tie": (lp_tie * tie_mask).sum(1),
            "copy": torch.where(is_copy, lp_copy, torch.zeros_like(lp_copy)).sum(1),
            "n_copy": is_copy.sum(1),
        }

    # ---- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def fill(
        self,
        z: torch.Tensor,
        ties: torch.Tensor,
        known: torch.Tensor,
        meter: torch.Tensor,
        ends: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        copy_bias: float = 0.0,
        top_p: float | None = None,
        windows: torch.Tensor | None = None,
        form: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left to right, draw every chunk where `known` [B, n] is False; known chunks stay as given.

        `copy_bias` is added to every "copy" logit (nats): on its own generated context the model
        repeats less than real tunes do, and the evaluation calibrates this on validation tunes.
        `top_p` (codebook priors): nucleus sampling of codes, by default the config's.
        `windows` [B, n, steps]: the known chunks' steps, for their last pitches (boundary_bins), their
        pitches (context_terms) and for which of them are codes a new chunk may not repeat; by default
        their nearest codes'.
        `form` [B, n]: where >= -1, what chunk i is instead of the pointer's draw (-1: new, j: a copy of
        chunk j < i); -2: the pointer draws.
        Returns (z [B, n, Z], ties [B, n], source [B, n]: -2 given, -1 new, j = copy of chunk j)."""
        B, n, _ = z.shape
        if n > self.cfg.max_chunks:
            raise ValueError(f"at most {self.cfg.max_chunks} chunks, asked for {n}")
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        dev = self.z_mean.device
        z, ties, known = z.to(dev).float().clone(), ties.to(dev).bool().clone(), known.to(dev).bool()
        length = torch.full((B,), n, dtype=torch.long, device=dev)
        source = torch.full((B, n), -2, dtype=torch.long, device=dev)
        tau = float(temperature)
        # (edge terms) the chunk a tune that ends repeats as its last, where its form says so
        closes = None
        if self.cfg.codebook and self.cfg.edge_terms and form is not None:
            closes = torch.zeros(B, n, dtype=torch.bool, device=dev)
            final = form[:, -1].to(dev)
            at = torch.nonzero(ends.to(dev).bool() & (final >= 0))[:, 0]
            closes[at, final[at]] = True
        boundary = bool(self.cfg.codebook and self.cfg.boundary_bins)
        # every chunk's last pitch (boundary term) and code (-1: a known chunk no code is), known ones'
        # now, drawn ones' as they are drawn
        last = torch.full(known.shape, -1, dtype=torch.long, device=dev) if boundary else None
        code = torch.full(known.shape, -1, dtype=torch.long, device=dev)
        # and (context terms) every chunk's pitch classes and range
        contexts = torch.zeros(*known.shape, 3, dtype=torch.long, device=dev) if self.cfg.context_terms else None
        if self.cfg.codebook and known.any():
            near = self.nearest_code(z[known])
            given = windows[known].to(dev) if windows is not None else self.code_windows[near]
            code[known] = torch.where((self.code_windows[near].long() == given.long()).all(-1), near, -1)
            if last is not None:
                last[known] = edge_pitches(given)[1]
            if contexts is not None:
                contexts[known] = chunk_context(given)
        cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        states = []  # the state at every position so far, from the layers' cached keys and values
        coords = []  # every chunk's standardized coordinates so far (what the state takes in; similar_lags)
        so_far = tune_contexts(contexts[:, :1])[:, 0] if contexts is not None else None  # nothing yet
        # (figure terms) the figures of every known chunk, and those the tune has played so far
        figure_terms = bool(self.cfg.codebook and self.cfg.figure_terms)
        if figure_terms:
            given_hot = torch.zeros(B, n, len(self.figure_vocab()), dtype=torch.bool, device=dev)
            if known.any():
                given_hot[known] = self.figure_hot(given) > 0
            played = torch.zeros(B, given_hot.shape[-1], dtype=torch.bool, device=dev)
        for i in range(n):
            prev_z = self.standardize(z[:, i - 1]) if i else None
            states.append(self.next_hidden(cache, prev_z, ties[:, i - 1] if i else None, meter, length, ends))
            if prev_z is not None:
                coords.append(prev_z)
                if so_far is not None and contexts is not None:
                    so_far = widen(so_far, contexts[:, i - 1])
                if figure_terms:
                    played |= given_hot[:, i - 1]
            todo = ~known[:, i]
            if not todo.any():
                continue
            hi = states[-1]
            ptr = self.pointer(torch.stack(states, 1))[:, i, : i + 1]  # new + copies of chunks 0..i-1
            ptr = torch.cat([ptr[:, :1], ptr[:, 1:] + copy_bias], 1)
            rows = torch.arange(B, device=dev)
            # the temperature shapes the mixture only: the pointer is sampled as trained, since a
            # cooler pointer mostly picks "new" (its most likely single choice) and repeats vanish
            choice = torch.multinomial(F.softmax(ptr, -1), 1, generator=generator)[:, 0]
            if form is not None:
                choice = torch.where(form[:, i] >= -1, form[:, i].to(dev) + 1, choice)
            if self.cfg.codebook:
                p = self.cfg.top_p if top_p is None else top_p
                prev = None if last is None else (last[:, i - 1] if i else torch.full_like(last[:, 0], -1))
                # a new chunk is never one of the tune's earlier chunks: the model was trained to say
                # those with the pointer, and its code head, never taught otherwise, drew them anyway
                # (16-bar samples repeated the chunk just before 0.61 times a tune, real tunes 0.04)
                # only rows that draw a new chunk here are scored, not copies or given chunks (at the
                # served copy bias 3 in 10 of a batch's chunks are copies)
                fresh = todo & (choice == 0)
                drawn = torch.zeros(B, dtype=torch.long, device=dev)
                if fresh.any():
                    near_by = None
                    if self.cfg.similar_lags:  # the chunks i-1 ... i-lags, zeros before the first
                        none = hi.new_zeros(int(fresh.sum()), self.z_std.shape[0])
                        lags = range(1, self.cfg.similar_lags + 1)
                        near_by = torch.stack([coords[i - lag][fresh] if lag <= i else none for lag in lags], 1)
                    tune = TuneSoFar(
                        None if prev is None else prev[fresh],
                        None if so_far is None else so_far[fresh],
                        near_by,
                        played[fresh].float() if figure_terms else None,
                        None if closes is None else closes[fresh, i],
                    )
                    drawn[fresh] = self.draw_codes(hi[fresh], meter[fresh], tau, p, generator, code[fresh, :i], tune)
                new = self.code_latents()[drawn]
            else:
                out = self.heads(hi)
                k = torch.multinomial(F.softmax(out["mix"] / tau, -1), 1, generator=generator)[:, 0]
                mu, sigma = out["mu"][rows, k], out["log_sigma"][rows, k].exp()
                eps = torch.randn(mu.shape, generator=generator, device=dev)
                new = self.unstandardize(mu + tau * sigma * eps)
            copied = z[rows, (choice - 1).clamp(min=0)]
            zi = torch.where((choice > 0)[:, None], copied, new)
            tie = torch.rand(B, generator=generator, device=dev) < torch.sigmoid(self.tie_out(hi)[..., 0])
            z[todo, i] = zi[todo]
            ties[todo, i] = tie[todo] & (i > 0)
            source[todo, i] = (choice - 1)[todo]
            if self.cfg.codebook:
                src, copy = (choice - 1).clamp(min=0), choice > 0
                code[todo, i] = torch.where(copy, code[rows, src], drawn)[todo]
                if contexts is not None:
                    contexts[todo, i] = torch.where(copy[:, None], contexts[rows, src], self.code_contexts()[drawn])[
                        todo
                    ]
                if last is not None:
                    last[todo, i] = torch.where(copy, last[rows, src], self.code_edges()[1][drawn])[todo]
                if figure_terms:  # a copy's figures are already played; a drawn code's are added
                    given_hot[todo & ~copy, i] = self.figure_hot(self.code_windows[drawn[todo & ~copy]]) > 0
        return z, ties, source
