"""MIDI bytes -> piano-roll PNG: notes over time, pitch names on the axis, bar lines.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global state shared between
requests or threads). The pixel size is fixed: PIANOROLL_SIZE for the full picture, THUMBNAIL_SIZE
for the admin list.
"""

from __future__ import annotations

import io

import numpy as np

PIANOROLL_SIZE = (1200, 400)  # width, height in pixels
THUMBNAIL_SIZE = (240, 48)
_DPI = 100
_NAMES = ["C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B"]
_BLACK_KEYS = {1, 3, 6, 8, 10}
_NOTE_COLOURS = ["#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085"]


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific pitch name (60 -> C4)."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def render_pianoroll(midi, *, thumbnail: bool = False, title: str = "") -> bytes:
    """Draw the notes of every non-drum instrument; returns PNG bytes of the fixed size.

    `midi`: the bytes, or a pretty_midi.PrettyMIDI already parsed (a render parses the file once for
    both piano rolls and the audio)."""
    import pretty_midi
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    pm = midi if isinstance(midi, pretty_midi.PrettyMIDI) else pretty_midi.PrettyMIDI(io.BytesIO(midi))
    instruments = [inst for inst in pm.instruments if not inst.is_drum and inst.notes]
    end = max(pm.get_end_time(), 1.0)
    pitches = [note.pitch for inst in instruments for note in inst.notes] or [60]
    low, high = min(pitches), max(pitches)
    if high - low < 12:  # at least an octave of rows, so a narrow tune does not look enormous
        pad = (12 - (high - low)) / 2
        low, high = int(np.floor(low - pad)), int(np.ceil(high + pad))
    low, high = max(0, low - 1), min(127, high + 1)

    width, height = THUMBNAIL_SIZE if thumbnail else PIANOROLL_SIZE
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    if thumbnail:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
    else:
        ax = fig.add_axes((0.07, 0.13, 0.91, 0.78 if title else 0.82))
    ax.set_xlim(0, end)
    ax.set_ylim(low - 0.5, high + 0.5)

    # Black-key rows shaded, like the keyboard on a piano-roll editor.
    for pitch in range(low, high + 1):
        if pitch % 12 in _BLACK_KEYS:
            ax.axhspan(pitch - 0.5, pitch + 0.5, color="#eef0f4", lw=0, zorder=0)
        elif pitch % 12 == 0 and not thumbnail:
            ax.axhline(pitch - 0.5, color="#c8ccd4", lw=0.6, zorder=0.5)  # octave boundary under each C

    downbeats = _downbeats(pm, end)
    beats = pm.get_beats() if not thumbnail else []
    for beat in beats:
        ax.axvline(beat, color="#e6e6e6", lw=0.5, zorder=0.6)
    for bar in downbeats:
        ax.axvline(bar, color="#9aa0a8" if not thumbnail else "#d0d4da", lw=0.8 if not thumbnail else 0.5, zorder=0.7)

    for index, inst in enumerate(instruments):
        polygons = [
            [(n.start, n.pitch - 0.42), (n.end, n.pitch - 0.42), (n.end, n.pitch + 0.42), (n.start, n.pitch + 0.42)]
            for n in inst.notes
        ]
        alphas = np.array([0.55 + 0.45 * n.velocity / 127 for n in inst.notes])
        colour = _NOTE_COLOURS[index % len(_NOTE_COLOURS)]
        collection = PolyCollection(
            polygons,
            facecolors=colour,
            edgecolors="#0b2545" if not thumbnail else "none",
            linewidths=0.4,
            zorder=2,
        )
        collection.set_alpha(alphas)
        ax.add_collection(collection)

    if not thumbnail:
        span = high - low
        # Every pitch for a narrow range, naturals for a middle one, C-E-G (never two labels a
        # semitone apart) for a wide one, only the Cs beyond four octaves: labels never overlap.
        if span <= 18:
            ticks = list(range(low, high + 1))
        elif span <= 24:
            ticks = [p for p in range(low, high + 1) if p % 12 not in _BLACK_KEYS]
        elif span <= 48:
            ticks = [p for p in range(low, high + 1) if p % 12 in (0, 4, 7)]
        else:
            ticks = [p for p in range(low, high + 1) if p % 12 == 0]
        ax.set_yticks(ticks, [pitch_name(p) for p in ticks], fontsize=8)
        ax.set_xlabel("time (m:ss)  ·  grey lines: bars", fontsize=8, color="#555555")
        ax.xaxis.set_major_formatter(_mmss)
        ax.tick_params(axis="x", labelsize=8)
        # Bar numbers along the top, thinned out so that they never collide.
        if downbeats:
            every = max(1, int(np.ceil(len(downbeats) / 40)))
            top = ax.secondary_xaxis("top")
            shown = downbeats[::every]
            top.set_xticks(shown, [str(1 + i * every) for i in range(len(shown))], fontsize=7, color="#555555")
            top.tick_params(length=2)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if title:
            fig.suptitle(title[:120], fontsize=10, x=0.07, ha="left", y=0.985)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _downbeats(pm, end: float) -> list[float]:
    try:
        bars = [float(t) for t in pm.get_downbeats() if t <= end]
    except Exception:  # noqa: BLE001 - odd meters from generated files: fall back to no bar lines
        bars = []
    return bars


def _mmss(seconds: float, _position=None) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{int(rest):02d}"
