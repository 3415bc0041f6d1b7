"""Model artifacts: a folder of files that load without executing code, each hash-checked.

Layout of an artifact folder::

    lendml-model.json      the manifest: format version, model kind, feature schema,
                           parameters, metadata and the sha256 of every other file
    model.txt              e.g. a LightGBM text model (or scorecard.json, weights.safetensors)

The manifest names every file with its sha256; :func:`read_artifact` refuses a folder whose
files do not match (a tampered or truncated file), whose manifest is not the one expected
(``expected_sha256``, kept by the registry), or which names a file outside the folder.
Nothing here unpickles: only JSON, text and safetensors formats are ever written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lendml.errors import ArtifactError

MANIFEST = "lendml-model.json"
FORMAT_VERSION = 1
# Formats that load without running code. Anything else is refused at write time.
SAFE_SUFFIXES = (".txt", ".json", ".safetensors", ".onnx", ".md", ".html", ".parquet")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A verified artifact folder: its manifest and the verified bytes of each file."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes] = field(repr=False)
    manifest_sha256: str

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    def text(self, name: str) -> str:
        return self.files[name].decode("utf-8")

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])


def write_artifact(
    path: str | os.PathLike[str],
    *,
    kind: str,
    files: dict[str, bytes],
    manifest: dict[str, Any] | None = None,
) -> str:
    """Write an artifact folder atomically and return the sha256 of its manifest.

    ``files`` maps plain file names (no folders) with a safe suffix to their bytes. The
    folder is staged next to ``path`` and renamed into place, so a reader sees the old
    artifact or the new one, never a mix. An existing folder at ``path`` is replaced.
    """
    out = Path(path)
    for name in files:
        if name == MANIFEST or Path(name).name != name or name.startswith("."):
            raise ArtifactError(f"Artifact file name {name!r} is not allowed.", path=str(out))
        if not name.endswith(SAFE_SUFFIXES):
            raise ArtifactError(
                f"Artifact file {name!r} has a format that may execute code on load; "
                f"allowed suffixes: {', '.join(SAFE_SUFFIXES)}.",
                path=str(out),
            )
    body = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        **(manifest or {}),
        "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
    }
    manifest_bytes = json.dumps(body, indent=2, sort_keys=True, default=str).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / MANIFEST).write_bytes(manifest_bytes)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return sha256_bytes(manifest_bytes)


def read_artifact(path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> Artifact:
    """Read and verify an artifact folder.

    Raises
    ------
    ArtifactError
        The folder or its manifest is missing or unreadable, the manifest's hash differs
        from ``expected_sha256``, a listed file is missing, or a file's sha256 differs
        from the manifest (the artifact was changed after it was written).
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{str(root)!r} is not a lendml model artifact: {MANIFEST} is missing.",
            path=str(root),
        )
    manifest_bytes = manifest_path.read_bytes()
    manifest_sha = sha256_bytes(manifest_bytes)
    if expected_sha256 is not None and manifest_sha != expected_sha256:
        raise ArtifactError(
            f"Model artifact {str(root)!r} was modified: its manifest hash is "
            f"{manifest_sha[:12]}…, the registry recorded {expected_sha256[:12]}…. "
            "Refusing to load it; re-register the model from its training run.",
            path=str(root),
        )
    try:
        manifest = json.loads(manifest_bytes)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON: {exc}.") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{manifest_path} has no 'files' table.", path=str(root))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format_version {manifest.get('format_version')!r} is not "
            f"supported (this lendml reads {FORMAT_VERSION}).",
            path=str(root),
        )
    files: dict[str, bytes] = {}
    for name, expected in manifest["files"].items():
        if Path(name).name != name or name.startswith("."):
            raise ArtifactError(f"{manifest_path} names a file outside the artifact: {name!r}.")
        file_path = root / name
        if not file_path.is_file():
            raise ArtifactError(
                f"Model artifact {str(root)!r} is incomplete: {name!r} is missing.",
                path=str(root),
            )
        data = file_path.read_bytes()
        actual = sha256_bytes(data)
        if actual != expected:
            raise ArtifactError(
                f"Model artifact file {str(file_path)!r} was modified: sha256 {actual[:12]}… "
                f"does not match the manifest's {str(expected)[:12]}…. Refusing to load it.",
                path=str(root),
                file=name,
            )
        files[name] = data
    return Artifact(path=root, manifest=manifest, files=files, manifest_sha256=manifest_sha)
