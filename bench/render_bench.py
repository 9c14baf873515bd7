"""Benchmark audio and piano-roll rendering on real corpus tunes (no Django, no database).

    python bench/render_bench.py --tunes 30 --out bench/results/render_cpu.json

Renders every tenth tune of Essen, O'Neill's and Ryan's Mammoth with the configured SoundFont
(REFRAIN_SOUNDFONT or Debian's default-GM.sf2) at 96 kbit/s and -16 LUFS, decodes each Ogg with
oggdec and reports: render seconds per minute of music (whole pipeline, and FluidSynth alone),
storage per track and per minute of music, loudness and peak of the decoded audio, and the
piano-roll PNG sizes and drawing time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.corpus import iter_abc_tunes
from catalog.rendering import integrated_loudness, render_audio, render_pianoroll


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "a.ogg", Path(folder) / "a.wav"
        src.write_bytes(data)
        subprocess.run(["oggdec", "-Q", "-o", str(dst), str(src)], check=True)
        with wave.open(str(dst)) as handle:
            pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
            return pcm.reshape(-1, handle.getnchannels()) / 32768.0, handle.getframerate()


def fluidsynth_seconds(midi: bytes, soundfont: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "in.mid").write_bytes(midi)
        started = time.perf_counter()
        subprocess.run(
            [
                "fluidsynth",
                "-n",
                "-i",
                "-q",
                "-g",
                "0.5",
                "-r",
                "44100",
                "-O",
                "float",
                "-T",
                "raw",
                "-F",
                str(Path(folder) / "out.raw"),
                soundfont,
                str(Path(folder) / "in.mid"),
            ],
            check=True,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tunes", type=int, default=30)
    parser.add_argument(
        "--soundfont", default=os.environ.get("REFRAIN_SOUNDFONT", "/usr/share/sounds/sf2/default-GM.sf2")
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    per = -(-args.tunes // 3)
    tunes = [
        t.midi
        for c in ("essen", "oneills1850", "ryans_mammoth")
        for t in itertools.islice((t for t in iter_abc_tunes(c) if hasattr(t, "midi")), 0, per * 10, 10)
    ]
    rows = []
    for midi in tunes[: args.tunes]:
        rendered = render_audio(midi, soundfont=args.soundfont)
        synth = fluidsynth_seconds(midi, args.soundfont)
        started = time.perf_counter()
        full, thumb = render_pianoroll(midi), render_pianoroll(midi, thumbnail=True)
        roll_seconds = time.perf_counter() - started
        samples, rate = decode(rendered.data)
        rows.append(
            {
                "seconds": len(samples) / rate,
                "render_s": rendered.render_seconds,
                "fluidsynth_s": synth,
                "ogg_bytes": len(rendered.data),
                "lufs": integrated_loudness(samples, rate),
                "peak_dbfs": 20 * float(np.log10(np.abs(samples).max())),
                "png_bytes": len(full),
                "thumb_bytes": len(thumb),
                "pianoroll_s": roll_seconds,
            }
        )
    minutes = sum(r["seconds"] for r in rows) / 60
    lufs = [r["lufs"] for r in rows]
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "soundfont": os.path.realpath(args.soundfont),
        "tunes": len(rows),
        "music_minutes": round(minutes, 2),
        "render_seconds_per_music_minute": round(sum(r["render_s"] for r in rows) / minutes, 2),
        "fluidsynth_seconds_per_music_minute": round(sum(r["fluidsynth_s"] for r in rows) / minutes, 2),
        "audio_kib_per_music_minute": round(sum(r["ogg_bytes"] for r in rows) / 1024 / minutes, 1),
        "audio_kib_per_track_mean": round(statistics.mean(r["ogg_bytes"] for r in rows) / 1024, 1),
        "pianoroll_kib_per_track_mean": round(statistics.mean(r["png_bytes"] for r in rows) / 1024, 1),
        "thumbnail_kib_per_track_mean": round(statistics.mean(r["thumb_bytes"] for r in rows) / 1024, 2),
        "pianoroll_seconds_per_track_mean": round(statistics.mean(r["pianoroll_s"] for r in rows), 3),
        "decoded_lufs_min_max_std": [round(min(lufs), 2), round(max(lufs), 2), round(statistics.pstdev(lufs), 3)],
        "decoded_peak_dbfs_max": round(max(r["peak_dbfs"] for r in rows), 2),
        "track_seconds_min_max": [round(min(r["seconds"] for r in rows), 1), round(max(r["seconds"] for r in rows), 1)],
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "tunes": rows}, indent=1))


if __name__ == "__main__":
    main()
