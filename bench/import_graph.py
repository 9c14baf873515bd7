"""App-to-app import lines (every import statement, function-level ones included), read with grimp:

    python bench/import_graph.py [--root DIR]     # DIR: a checkout, default this one

Prints one line per edge "importer -> imported: n import lines" and writes bench/results/import_graph.json
when run on this checkout. Upward edges (against recommend -> generation -> catalog -> config) are the
ones the import-linter contract forbids.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import grimp

APPS = ["web", "recommend", "generation", "catalog", "config", "theory"]


def edges(root: Path) -> dict[str, int]:
    sys.path.insert(0, str(root))
    present = [app for app in APPS if (root / app / "__init__.py").exists()]
    graph = grimp.build_graph(*present)
    out = {}
    for importer, imported in itertools.permutations(present, 2):
        lines = 0
        for module in graph.find_descendants(importer) | {importer}:
            for target in graph.find_modules_directly_imported_by(module):
                if target == imported or target.startswith(imported + "."):
                    lines += len(graph.get_import_details(importer=module, imported=target)) or 1
        if lines:
            out[f"{importer} -> {imported}"] = lines
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    found = edges(args.root.resolve())
    for edge, lines in sorted(found.items()):
        print(f"{edge}: {lines} import lines")
    if args.root.resolve() == Path(__file__).resolve().parent.parent:
        out = Path(__file__).parent / "results" / "import_graph.json"
        out.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
