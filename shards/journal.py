"""An append-only journal of finished work, so a killed job resumes without redoing it.

Each line is one JSON record, written with a single ``write`` + fsync; a torn last line (the
process died mid-write) is ignored on load, so the work it described is simply redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # torn tail from a killed writer: everything after it is redone

    def append(self, kind: str, name: str, **data: Any) -> None:
        rec = {"kind": kind, "name": name, **data}
        line = json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(rec)

    def done(self, kind: str) -> dict[str, dict[str, Any]]:
        """Records of one kind by name (the last record wins)."""
        return {r["name"]: r for r in self.records if r.get("kind") == kind}
