"""The feature catalog: applied definitions with their content-hash versions.

Stored as one JSON file, written atomically. Each apply appends the new version of a
changed definition to its history, so a model can name the exact version it used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lendml.errors import FeatureNotFound, StoreError

KINDS = ("entities", "sources", "feature_views", "derived_views", "feature_services")


@dataclass(frozen=True)
class CatalogEntry:
    """One applied definition."""

    kind: str
    name: str
    version: str
    spec: dict[str, Any]
    applied_at: str


class Catalog:
    """Read and write the catalog file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": 1, "objects": {k: {} for k in KINDS}}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"Feature catalog {str(self.path)!r} is not valid JSON ({exc}); restore it "
                "from version control or delete it and run `lendml apply` again.",
                path=str(self.path),
            ) from exc

    def record(self, items: list[tuple[str, str, str, dict[str, Any]]]) -> dict[str, list[str]]:
        """Record (kind, name, version, spec) items; return names added/changed/unchanged."""
        data = self._load()
        now = datetime.now(UTC).isoformat()
        report: dict[str, list[str]] = {"added": [], "changed": [], "unchanged": []}
        for kind, name, version, spec in items:
            bucket = data["objects"].setdefault(kind, {})
            entry = bucket.get(name)
            if entry is None:
                report["added"].append(f"{kind}:{name}")
            elif entry["version"] == version:
                report["unchanged"].append(f"{kind}:{name}")
                continue
            else:
                report["changed"].append(f"{kind}:{name}")
            history = (entry or {}).get("history", [])
            history.append({"version": version, "applied_at": now})
            bucket[name] = {"version": version, "spec": spec, "applied_at": now, "history": history}
        self._write(data)
        return report

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def list(self, kind: str) -> list[CatalogEntry]:
        data = self._load()
        return [
            CatalogEntry(kind, name, e["version"], e["spec"], e["applied_at"])
            for name, e in sorted(data["objects"].get(kind, {}).items())
        ]

    def get(self, kind: str, name: str) -> CatalogEntry:
        for entry in self.list(kind):
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.list(kind)) or "(none applied yet)"
        raise FeatureNotFound(
            f"No {kind[:-1].replace('_', ' ')} named {name!r} in the catalog. Known: {known}. "
            "Run `lendml apply` after adding it to features.py.",
            name=name,
        )
