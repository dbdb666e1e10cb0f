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
