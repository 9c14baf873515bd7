"""Turning MIDI bytes into things people can hear and see. No Django import anywhere in here.

- audio.render_audio: MIDI -> FluidSynth (General MIDI SoundFont) -> loudness-normalized Ogg Vorbis
- pianoroll.render_pianoroll: MIDI -> PNG (notes over time, pitch names, bar lines), full size or thumbnail
"""

from catalog.rendering.audio import (
    AudioRenderError,
    RenderedAudio,
    RendererMissing,
    SoundFontMissing,
    check_audio_renderer,
    integrated_loudness,
    render_audio,
)
from catalog.rendering.pianoroll import PIANOROLL_SIZE, THUMBNAIL_SIZE, render_pianoroll

__all__ = [
    "AudioRenderError",
    "PIANOROLL_SIZE",
    "RenderedAudio",
    "RendererMissing",
    "SoundFontMissing",
    "THUMBNAIL_SIZE",
    "check_audio_renderer",
    "integrated_loudness",
    "render_audio",
    "render_pianoroll",
]
