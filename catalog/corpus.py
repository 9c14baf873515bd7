"""Read the folk corpora that ship inside the music21 package as MIDI bytes.

No Django import here: the model package's data preparation uses this reader too.
ABC tunes are parsed with symusic (hundreds of tunes a second); the Bach chorales
(MusicXML) need music21, which is slower, so they run in a worker process beside the ABC.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

# collection name -> folder inside music21/corpus
COLLECTIONS: dict[str, str] = {
    "essen": "essenFolksong",
    "oneills1850": "oneills1850",
    "ryans_mammoth": "ryansMammoth",
    "airds_airs": "airdsAirs",
    "misc_folk": "miscFolk",
    "bach_chorales": "bach",
}

# Essen file-name prefix -> region label (the corpus's own grouping).
ESSEN_REGIONS: dict[str, str] = {
    "altdeu": "German",
    "boehme": "German",
    "erk": "German",
    "fink": "German",
    "folkHaydn": "German",
    "zuccal": "German",
    "ballad": "Ballads",
    "dva": "Lorraine",
    "lot": "Lorraine",
    "lux": "Luxembourg",
    "han": "Chinese Han",
    "irl": "Irish",
    "kinder": "Children's songs",
    "variant": "Swiss",
}
COLLECTION_REGIONS: dict[str, str] = {
    "oneills1850": "Irish",
    "ryans_mammoth": "American/Irish/Scottish",
    "airds_airs": "Scottish",
    "misc_folk": "British/American",
    "bach_chorales": "German chorale",
}

CHORALE_TEMPO = 80.0

_HEADER = re.compile(r"^([A-Za-z]):\s*(.*)$")


@dataclasses.dataclass(frozen=True)
class CorpusTune:
    collection: str
    region: str
    title: str
    composer: str
    meter: str  # as written in the source, e.g. "6/8"; normalised by ingestion
    key: str  # as written in the source, e.g. "Dmix"; "" when unknown
    source: str  # stable id: "<folder>/<file>#<index>"
    midi: bytes

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class AlreadyPresent:
    """A tune the caller already has (passed in `skip`): not parsed, but still counted."""

    source: str


@dataclasses.dataclass(frozen=True)
class CorpusFailure:
    source: str
    reason: str


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """symusic's ABC parser prints warnings on the C-level stdout: silence fd 1."""
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def _split_abc(text: str) -> list[str]:
    parts = re.split(r"\n(?=X:)", "\n" + text)
    return [p.strip("\n") + "\n" for p in parts if p.lstrip().startswith("X:")]


def _abc_headers(tune: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in tune.splitlines():
        m = _HEADER.match(line)
        if not m:
            if headers.get("K") is not None:
                break  # body starts after K:
            continue
        field, value = m.group(1), m.group(2).strip()
        headers.setdefault(field, value)
        if field == "K":
            break
    return headers


def _meter(raw: str) -> str:
    raw = raw.strip()
    if raw in ("C", ""):
        return "4/4"
    if raw == "C|":
        return "2/2"
    return raw.split()[0]


def _essen_region(filename: str, origin: str) -> str:
    prefix = re.match(r"[A-Za-z]+", filename)
    name = prefix.group(0) if prefix else filename
    if name in ESSEN_REGIONS:
        return ESSEN_REGIONS[name]
    # test files: fall back on the origin line's country
    if "Irland" in origin:
        return "Irish"
    if "Ungarn" in origin:
        return "Hungarian"
    return "German"


def _abc_files(collection: str) -> list[Path]:
    return sorted((corpus_root() / COLLECTIONS[collection]).glob("*.abc"))


def iter_abc_tunes(
    collection: str, skip: frozenset[str] = frozenset(), limit: int | None = None
) -> Iterator[CorpusTune | CorpusFailure]:
    """The first `limit` tunes of one ABC collection; sources in `skip` are not parsed."""
    from symusic import Score

    seen = 0

    for path in _abc_files(collection):
        text = path.read_text(encoding="latin-1")
        rel = f"{path.parent.name}/{path.name}"
        for index, tune in enumerate(_split_abc(text)):
            source = f"{rel}#{index}"
            if limit is not None and seen >= limit:
                return
            seen += 1
            if source in skip:
                yield AlreadyPresent(source)
                continue
            headers = _abc_headers(tune)
            try:
                with _quiet_stdout():
                    score = Score.from_abc(tune)
                midi = score.dumps_midi()
            except Exception as exc:  # the parser raises plain RuntimeErrors
                yield CorpusFailure(source, f"unparseable ABC: {exc}")
                continue
            if score.note_num() == 0:
                yield CorpusFailure(source, "no notes")
                continue
            region = (
                _essen_region(path.name, headers.get("O", ""))
                if collection == "essen"
                else COLLECTION_REGIONS[collection]
            )
            yield CorpusTune(
                collection=collection,
                region=region,
                title=headers.get("T", "").strip() or f"{path.stem} #{index + 1}",
                composer=headers.get("C", "").strip() or "Traditional",
                meter=_meter(headers.get("M", "")),
                key=headers.get("K", "").strip(),
                source=source,
                midi=midi,
            )


def chorale_paths() -> list[Path]:
    root = corpus_root() / COLLECTIONS["bach_chorales"]
    return sorted(p for p in root.iterdir() if p.suffix in (".mxl", ".xml", ".krn"))


def read_chorale(path: Path) -> CorpusTune | CorpusFailure:
    """Parse one chorale with music21 and write all four voices as MIDI with pretty_midi.

    music21's own MIDI export costs about 160 ms a chorale; building the notes with
    pretty_midi from the tie-merged parts costs a fraction of that.
    """
    import io

    import music21
    import pretty_midi

    source = f"bach/{path.name}#0"
    try:
        score = music21.converter.parse(str(path))
        ts = next(iter(score.recurse().getElementsByClass("TimeSignature")), None)
        ks = next(iter(score.recurse().getElementsByClass("KeySignature")), None)
        seconds_per_quarter = 60.0 / CHORALE_TEMPO
        pm = pretty_midi.PrettyMIDI(initial_tempo=CHORALE_TEMPO)
        if ts is not None:
            pm.time_signature_changes.append(
                pretty_midi.TimeSignature(ts.numerator, ts.denominator, 0.0)
            )
        for part in score.parts:
            instrument = pretty_midi.Instrument(program=0, name=part.partName or "")
            for note in part.flatten().stripTies().notes:
                start = float(note.offset) * seconds_per_quarter
                end = start + float(note.quarterLength) * seconds_per_quarter
                if end <= start:
                    continue  # grace notes carry no duration
                for pitch in note.pitches:
                    instrument.notes.append(
                        pretty_midi.Note(velocity=80, pitch=pitch.midi, start=start, end=end)
                    )
            pm.instruments.append(instrument)
        buffer = io.BytesIO()
        pm.write(buffer)
    except Exception as exc:  # music21 raises many exception types on bad input
        return CorpusFailure(source, f"unparseable score: {exc}")
    key = ""
    if ks is not None:
        key_obj = ks if hasattr(ks, "tonic") else ks.asKey()
        key = f"{key_obj.tonic.name}{'' if key_obj.mode == 'major' else 'm'}"
    bwv = path.stem.upper()
    title = score.metadata.title if score.metadata and score.metadata.title else ""
    return CorpusTune(
        collection="bach_chorales",
        region=COLLECTION_REGIONS["bach_chorales"],
        title=f"{title} ({bwv})" if title and title.upper() != bwv else f"Chorale {bwv}",
        composer="J. S. Bach",
        meter=ts.ratioString if ts is not None else "4/4",
        key=key,
        source=source,
        midi=buffer.getvalue(),
    )


def count_tunes(collections: Iterable[str]) -> int:
    """Fast count (no parsing) for progress bars."""
    total = 0
    for collection in collections:
        if collection == "bach_chorales":
            total += len(chorale_paths())
        else:
            for path in _abc_files(collection):
                total += len(_split_abc(path.read_text(encoding="latin-1")))
    return total


def iter_corpus(
    collections: Iterable[str] | None = None,
    processes: int = 2,
    skip: Iterable[str] = (),
    per_collection: int | None = None,
) -> Iterator[CorpusTune | CorpusFailure | AlreadyPresent]:
    """Every tune of the chosen collections (the first `per_collection` of each), in a fixed order.

    Sources in `skip` come back as AlreadyPresent without being parsed, so a re-run is fast.

    The chorales are parsed in a process pool while this process reads the ABC collections.
    """
    skip = frozenset(skip)
    chosen = list(collections or COLLECTIONS)
    unknown = [c for c in chosen if c not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown collections {unknown}; choose from {sorted(COLLECTIONS)}")
    abc = [c for c in chosen if c != "bach_chorales"]
    if "bach_chorales" not in chosen:
        for collection in abc:
            yield from iter_abc_tunes(collection, skip, per_collection)
        return
    import multiprocessing

    chorales = chorale_paths()[:per_collection]
    present = [AlreadyPresent(f"bach/{p.name}#0") for p in chorales if f"bach/{p.name}#0" in skip]
    chorales = [p for p in chorales if f"bach/{p.name}#0" not in skip]
    if not chorales:
        for collection in abc:
            yield from iter_abc_tunes(collection, skip, per_collection)
        yield from present
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(max(1, processes - 1) if abc else processes) as pool:
        pending = pool.imap(read_chorale, chorales, chunksize=4)
        for collection in abc:
            yield from iter_abc_tunes(collection, skip, per_collection)
        yield from present
        yield from pending


def export_midi_folder(out: Path, collections: Iterable[str] | None = None, limit: int | None = None) -> int:
    """Write the corpus as a folder of .mid files plus metadata.csv (for the model package)."""
    import csv

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    chosen = list(collections or COLLECTIONS)
    total = count_tunes(chosen) if limit is None else limit
    written = 0
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "collection", "region", "title", "meter", "key", "source"])
        for item in tqdm(iter_corpus(chosen), total=total, unit="tune", desc="export"):
            if not isinstance(item, CorpusTune):
                continue
            name = f"{item.source_hash[:16]}.mid"
            (out / name).write_bytes(item.midi)
            writer.writerow([name, item.collection, item.region, item.title, item.meter, item.key, item.source])
            written += 1
            if limit is not None and written >= limit:
                break
    return written


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Export the music21 folk corpora as MIDI files.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--collections", nargs="*", choices=sorted(COLLECTIONS))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    print(export_midi_folder(args.out, args.collections, args.limit), "tunes written to", args.out)
