"""What every benchmark script shares: writing its JSON result."""
from __future__ import annotations

import json
from pathlib import Path


def write_result(path: Path, result: dict, note: str = "") -> None:
    """Write ``result`` as indented JSON to ``path`` (folders made) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}{note}")


def write_generated_section(path: Path, generated: str, markers: tuple[str, str], new_file_head: str) -> None:
    """Write ``generated`` into the markdown file ``path`` between the two ``markers`` lines, keeping the
    hand-written text around them; a missing file starts with ``new_file_head``."""
    begin, end = markers
    path = Path(path)
    text = path.read_text() if path.is_file() else new_file_head + begin + "\n" + end + "\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + begin + "\n" + end + "\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + begin + "\n\n" + generated.strip("\n") + "\n\n" + end + tail)
