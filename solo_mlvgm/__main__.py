"""``python -m solo_mlvgm list``: what exists to run and to choose from (run configs, generators, views,
data sources, methods, backbones, benchmark sources), each with its first comment line.
``python -m solo_mlvgm export --out <folder> [--n N] ...``: a finite labelled ImageFolder from a generator."""

from __future__ import annotations

import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _configs(folder: Path) -> list[tuple[str, str]]:
    return [(p.stem, _first_comment(p)) for p in sorted(folder.glob("*.yaml"))]


def list_components() -> str:
    from solo_mlvgm.backends import resolve_backend, solo_importable
    from solo_mlvgm.bench.sources import known_sources
    from solo_mlvgm.generators import GENERATORS
    from solo_mlvgm.methods import BACKBONES, METHODS

    sections: list[tuple[str, list[tuple[str, str]]]] = [
        ("run configs (--config-name)", [c for c in _configs(CONFIGS) if c[0] != "pretrain_base"]),
        ("generators (generator=)", _configs(CONFIGS / "generator")),
        ("views (views=)", _configs(CONFIGS / "views")),
        ("data sources (data=)", _configs(CONFIGS / "data")),
        ("methods, lightly backend (method=)", [(name, cls.__doc__ or "") for name, cls in METHODS.items()]),
        ("backbones (backbone.name=)", [(name, "") for name in BACKBONES]),
        ("registered generator classes", [(name, cls.__qualname__) for name, cls in GENERATORS.items()]),
        ("benchmark sources (bench.sources=)", [(name, "") for name in known_sources()]),
    ]
    if solo_importable():
        solo = resolve_backend("solo")
        sections.append(("methods, solo backend (method=)", [(n, "") for n in solo.pretraining_methods()]))
    else:
        sections.append(("methods, solo backend", [("(solo-learn is not installed)", "")]))
    lines = []
    for title, entries in sections:
        lines.append(f"{title}:")
        width = max((len(name) for name, _ in entries), default=0)
        for name, note in entries:
            note = note.strip().splitlines()[0] if note.strip() else ""
            lines.append(f"  {name:<{width}}  {note}".rstrip())
    return "\n".join(lines)


USAGE = "usage: python -m solo_mlvgm list | python -m solo_mlvgm export --out <folder> [--n N] [...]"


def main(argv: list[str]) -> int:
    if argv == ["list"]:
        print(list_components())
        return 0
    if argv[:1] == ["export"]:
        from solo_mlvgm.data.export import main as export

        return export(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
