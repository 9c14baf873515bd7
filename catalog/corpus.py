"""Read the folk corpora that ship inside the music21 package as MIDI bytes.

No Django import here: the model package's data preparation uses this reader too.
ABC tunes are parsed with symusic (hundreds of tunes a second); the Bach chorales
(MusicXML) need music21, which is slower, so they run in a worker process beside the ABC.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import itertools
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


def _latin1_for_bad_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("refrain-latin-1", _latin1_for_bad_bytes)


def read_abc_text(path: Path) -> str:
    """The corpus's ABC files are UTF-8 (essenFolksong/irl.abc: 'Bhéasach'); read as latin-1 they gave
    432 garbled titles ('BhÃ©asach'). Bytes that are not valid UTF-8 are taken as latin-1, so an older
    latin-1 file still reads."""
    return path.read_bytes().decode("utf-8", errors="refrain-latin-1")


def _abc_files(collection: str) -> list[Path]:
    return sorted((corpus_root() / COLLECTIONS[collection]).glob("*.abc"))


@dataclasses.dataclass(frozen=True)
class _AbcJob:
    collection: str
    filename: str
    source: str
    index: int
    text: str


def _abc_jobs(collection: str) -> Iterator[_AbcJob]:
    for path in _abc_files(collection):
        rel = f"{path.parent.name}/{path.name}"
        for index, tune in enumerate(_split_abc(read_abc_text(path))):
            yield _AbcJob(collection, path.name, f"{rel}#{index}", index, tune)


def read_abc_tune(job: _AbcJob) -> CorpusTune | CorpusFailure:
    """Parse one ABC tune with symusic and keep its header labels."""
    from symusic import Score

    headers = _abc_headers(job.text)
    try:
        with _quiet_stdout():
            score = Score.from_abc(job.text)
        midi = score.dumps_midi()
    except Exception as exc:  # noqa: BLE001 - the parser raises plain RuntimeErrors
        return CorpusFailure(job.source, f"unparseable ABC: {exc}")
    if score.note_num() == 0:
        return CorpusFailure(job.source, "no notes")
    region = (
        _essen_region(job.filename, headers.get("O", ""))
        if job.collection == "essen"
        else COLLECTION_REGIONS[job.collection]
    )
    return CorpusTune(
        collection=job.collection,
        region=region,
        title=headers.get("T", "").strip() or f"{Path(job.filename).stem} #{job.index + 1}",
        composer=headers.get("C", "").strip() or "Traditional",
        meter=_meter(headers.get("M", "")),
        key=headers.get("K", "").strip(),
        source=job.source,
        midi=midi,
    )


def iter_abc_tunes(collection: str) -> Iterator[CorpusTune | CorpusFailure]:
    """Every tune of one ABC collection, parsed in this process."""
    for job in _abc_jobs(collection):
        yield read_abc_tune(job)


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
            pm.time_signature_changes.append(pretty_midi.TimeSignature(ts.numerator, ts.denominator, 0.0))
        for part in score.parts:
            instrument = pretty_midi.Instrument(program=0, name=part.partName or "")
            for note in part.flatten().stripTies().notes:
                start = float(note.offset) * seconds_per_quarter
                end = start + float(note.quarterLength) * seconds_per_quarter
                if end <= start:
                    continue  # grace notes carry no duration
                for pitch in note.pitches:
                    instrument.notes.append(pretty_midi.Note(velocity=80, pitch=pitch.midi, start=start, end=end))
            pm.instruments.append(instrument)
        buffer = io.BytesIO()
        pm.write(buffer)
    except Exception as exc:  # noqa: BLE001 - music21 raises many exception types on bad input
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


def count_tunes(collections: Iterable[str], per_collection: int | None = None) -> int:
    """Fast count (no parsing) for progress bars."""
    return sum(1 for _ in _jobs(list(collections), per_collection))


def _jobs(collections: list[str], per_collection: int | None) -> Iterator[_AbcJob | Path]:
    for collection in collections:
        jobs = chorale_paths() if collection == "bach_chorales" else _abc_jobs(collection)
        yield from itertools.islice(jobs, per_collection)


CorpusJob = _AbcJob | Path  # one tune to read: an ABC tune's text, or a chorale's file


def plan(
    collections: Iterable[str] | None = None, per_collection: int | None = None, limit: int | None = None
) -> list[CorpusJob]:
    """The tunes to read, in a fixed order: the first `limit` of the chosen collections
    (the first `per_collection` of each). Cheap: nothing is parsed."""
    chosen = list(collections or COLLECTIONS)
    unknown = [c for c in chosen if c not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown collections {unknown}; choose from {sorted(COLLECTIONS)}")
    return list(itertools.islice(_jobs(chosen, per_collection), limit))


def job_source(job: CorpusJob) -> str:
    return job.source if isinstance(job, _AbcJob) else f"bach/{job.name}#0"


def read(job: CorpusJob) -> CorpusTune | CorpusFailure:
    return read_abc_tune(job) if isinstance(job, _AbcJob) else read_chorale(job)


# Below this many tunes a process pool costs more (spawn, imports) than it saves.
POOL_THRESHOLD = 300


def iter_corpus(
    collections: Iterable[str] | None = None,
    processes: int | None = None,
    per_collection: int | None = None,
    limit: int | None = None,
) -> Iterator[CorpusTune | CorpusFailure]:
    """The first `limit` tunes of the chosen collections (the first `per_collection` of each),
    parsed in a process pool (one process per core) while the caller consumes them, in order."""
    jobs = plan(collections, per_collection, limit)
    if len(jobs) < POOL_THRESHOLD:
        yield from map(read, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes or os.cpu_count() or 2) as pool:
        yield from pool.imap(read, jobs, chunksize=16)


def export_midi_folder(out: Path, collections: Iterable[str] | None = None, limit: int | None = None) -> int:
    """Write the corpus as a folder of .mid files plus metadata.csv (for the model package)."""
    import csv

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    chosen = list(collections or COLLECTIONS)
    total = min(count_tunes(chosen), limit or 10**9)
    written = 0
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "collection", "region", "title", "meter", "key", "source"])
        for item in tqdm(iter_corpus(chosen, limit=limit), total=total, unit="tune", desc="export"):
            if isinstance(item, CorpusFailure):
                continue
            name = f"{item.source_hash[:16]}.mid"
            (out / name).write_bytes(item.midi)
            writer.writerow([name, item.collection, item.region, item.title, item.meter, item.key, item.source])
            written += 1
    return written


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Export the music21 folk corpora as MIDI files.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--collections", nargs="*", choices=sorted(COLLECTIONS))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    print(export_midi_folder(args.out, args.collections, args.limit), "tunes written to", args.out)
