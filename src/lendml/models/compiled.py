"""LightGBM models compiled to native code (lleaves / LLVM) for batch scoring.

:class:`CompiledScorer` turns a LightGBM text model into machine code with
`lleaves <https://github.com/siboehm/lleaves>`_ and returns the same raw scores (log-odds)
as ``Booster.predict(raw_score=True)``, faster (2.4x for a 500-tree × 63-leaf model in
``benchmarks/serving/bench_batch.py``), on all cores.

Compiling a 500-tree model takes minutes, so the object code is cached on local disk,
keyed by the sha256 of the model text (plus the compiler's versions, options and the
CPU it targets). The object is native code that this process will run, so the cache is
guarded:

* an entry is only ever written by :class:`CompiledScorer` itself, from a model text it
  was handed (in lendml: a text whose hash the artifact manifest verified), through a
  temporary file renamed into place — a crash never leaves half an object;
* on load, the entry's header must name the same model sha256 and compiler settings, the
  object's sha256 must match, and an HMAC over both must verify with a key that lives
  only in the local cache folder (created on first use, mode 0600). An object copied in
  from elsewhere — a registry download, another machine, another model — fails one of
  these checks, is logged and refused, and the model is compiled afresh;
* every scorer, compiled or loaded, scores a set of probe rows (the model's own split
  thresholds, just above and below them, zeros, missing values) and must agree with
  LightGBM to 1e-9 before it is used.

When lleaves is unavailable, cannot compile the model, or fails the probe check, the
scorer falls back to LightGBM's own ``Booster.predict`` and says why (``fallback_reason_``
and a logged warning), so scoring never depends on the compiler being present.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightgbm as lgb
import numpy as np

from lendml.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from lendml.models.lightgbm import LightGBMModel

log = logging.getLogger(__name__)

Backend = Literal["lleaves", "lightgbm"]

CACHE_ENV = "LENDML_COMPILED_CACHE"
TOLERANCE = 1e-9  # the agreement with LightGBM's raw scores required of a compiled object
_MAGIC = b"LENDML-COMPILED\x00"
_FORMAT = 1
_KEY_FILE = ".key"
_SUFFIX = ".lleaves"
# LightGBM reads |value| <= kZeroThreshold (the float 1e-35) as zero when it predicts
# from a dense matrix; lleaves compares the value as given.
_KZERO = float(np.float32(1e-35))
# lleaves' defaults, fixed here so that they are part of the cache key
_OPTIONS: dict[str, Any] = {
    "raw_score": True,
    "use_fp64": True,
    "fblocksize": 34,
    "fcodemodel": "large",
    "finline": True,
}


def default_cache_dir() -> Path:
    """The local folder for compiled objects when none is given.

    ``$LENDML_COMPILED_CACHE``, else ``$XDG_CACHE_HOME/lendml/compiled``, else
    ``~/.cache/lendml/compiled``. (Scoring a registered model from a project uses
    ``<project>/data/model-cache/.compiled`` instead.)
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lendml" / "compiled"


def model_text_sha256(text: str) -> str:
    """The sha256 of a LightGBM text model (the cache key of its compiled object)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CompiledScorer:
    """Raw scores of a LightGBM text model, from LLVM-compiled code when possible.

    Build it with :meth:`from_model` (a fitted or loaded
    :class:`~lendml.models.lightgbm.LightGBMModel`) or :meth:`from_text`.

    Attributes
    ----------
    backend_
        ``"lleaves"`` (compiled code) or ``"lightgbm"`` (the fallback).
    fallback_reason_
        Why the fallback is used, or ``None``.
    model_sha256_
        The sha256 of the model text.
    n_features_
        Columns of the encoded matrix the model reads.
    cache_path_
        The compiled object's cache file (``None`` without a cache).
    from_cache_
        Whether the object was loaded from the cache rather than compiled.
    compile_seconds_
        Time spent compiling, or loading and checking the cached object.
    n_jobs
        Threads used by :meth:`predict_raw` (default: every core).

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np, tempfile
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = (X[:, 0] > 0).astype(float)
    >>> booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 4},
    ...                     lgb.Dataset(X, y), num_boost_round=5)
    >>> scorer = CompiledScorer.from_text(booster.model_to_string(),
    ...                                   cache_dir=tempfile.mkdtemp())
    >>> raw = scorer.predict_raw(X)
    >>> bool(np.max(np.abs(raw - booster.predict(X, raw_score=True))) <= 1e-9)
    True
    """

    backend_: Backend
    fallback_reason_: str | None
    cache_path_: Path | None
    from_cache_: bool
    compile_seconds_: float

    def __init__(
        self,
        model_text: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        compile: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        if n_jobs is not None and (isinstance(n_jobs, bool) or n_jobs < 1):
            raise ConfigError(f"n_jobs must be a positive number of threads; got {n_jobs!r}.")
        self.n_jobs = n_jobs or os.cpu_count() or 1
        self.model_sha256_ = model_text_sha256(model_text)
        self._booster = lgb.Booster(model_str=model_text)
        self.n_features_ = int(self._booster.num_feature())
        facts = _model_facts(model_text)
        self._zero_tiny = facts["zero_tiny"]
        self._probe = _probe_rows(facts, self.n_features_)
        self._probe_expected = self._booster.predict(self._probe, raw_score=True)
        self._compiled: Any = None
        self.backend_ = "lightgbm"
        self.fallback_reason_ = None
        self.cache_path_ = None
        self.from_cache_ = False
        self.compile_seconds_ = 0.0
        if not compile:
            self.fallback_reason_ = "compilation turned off (compile=False)"
            return
        if facts["n_classes"] != 1:
            self._fall_back(f"the model has {facts['n_classes']} classes; only one is compiled")
            return
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        start = time.perf_counter()
        try:
            self._compiled = self._build(model_text, root if use_cache else None)
        except Exception as exc:  # lleaves raises assorted types for what it cannot compile
            self._fall_back(f"lleaves could not compile the model: {type(exc).__name__}: {exc}")
            return
        self.compile_seconds_ = time.perf_counter() - start
        worst = self._probe_error(self._compiled)
        if not worst <= TOLERANCE:
            self._compiled = None
            self._fall_back(
                f"the compiled model differs from LightGBM by {worst:.3g} on probe rows "
                f"(tolerance {TOLERANCE:g})"
            )
            return
        self.backend_ = "lleaves"

    # -- construction
    @classmethod
    def from_text(cls, model_text: str, **options: Any) -> CompiledScorer:
        """From LightGBM's text model (``Booster.model_to_string()``); ``options`` as
        for the constructor (``cache_dir``, ``use_cache``, ``compile``, ``n_jobs``)."""
        return cls(model_text, **options)

    @classmethod
    def from_model(cls, model: LightGBMModel, **options: Any) -> CompiledScorer:
        """From a fitted or loaded LightGBM model, up to its best iteration.

        Raises
        ------
        ConfigError
            ``model`` is not a fitted LightGBM model.
        """
        text_of = getattr(model, "model_text", None)
        if getattr(model, "booster_", None) is None or text_of is None:
            raise ConfigError(
                f"{type(model).__name__} is not a fitted LightGBM model; only LightGBM "
                "models compile (score other kinds with model.decision_function)."
            )
        return cls(text_of(), **options)

    # -- scoring
    def predict_raw(self, X_encoded: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
        """The raw score (log-odds) of each row: ``booster.predict(X, raw_score=True)``
        to within 1e-9.

        Parameters
        ----------
        X_encoded
            Rows as the model reads them, shape ``(n, n_features_)``:
            ``model.schema_.encode(frame)``.
        n_jobs
            Threads for this call (default: ``self.n_jobs``).

        Raises
        ------
        DataValidationError
            ``X_encoded`` has the wrong shape.
        """
        X = np.asarray(X_encoded, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise DataValidationError(
                f"X_encoded must have shape (n_rows, {self.n_features_}) — the model's "
                f"encoded features; got shape {X.shape!r}. Encode a frame with "
                "model.schema_.encode(frame)."
            )
        jobs = n_jobs or self.n_jobs
        if self._compiled is None:
            return self._booster.predict(X, raw_score=True, num_threads=jobs)
        if not len(X):
            return np.zeros(0)
        return self._run(self._compiled, X, jobs)

    def _run(self, compiled: Any, X: np.ndarray, jobs: int) -> np.ndarray:
        X = np.ascontiguousarray(X)
        if self._zero_tiny:
            tiny = (np.abs(X) <= _KZERO) & (X != 0.0)
            if tiny.any():
                X = np.where(tiny, 0.0, X)
        out: np.ndarray = compiled.predict(X, n_jobs=min(jobs, max(len(X) // 256, 1)))
        return out

    # -- compiling and the cache
    def _fall_back(self, reason: str) -> None:
        self.fallback_reason_ = reason
        log.warning(
            "Scoring model %s… with LightGBM's Booster.predict instead of compiled code: %s.",
            self.model_sha256_[:12],
            reason,
        )

    def _probe_error(self, compiled: Any) -> float:
        got = self._run(compiled, self._probe, 1)
        return float(np.max(np.abs(got - self._probe_expected), initial=0.0))

    def _build(self, model_text: str, root: Path | None) -> Any:
        import lleaves  # imported here: llvmlite loads LLVM, which plain scoring never needs

        header = {
            "format": _FORMAT,
            "model_sha256": self.model_sha256_,
            "compiler": _compiler_identity(),
        }
        path = None
        if root is not None:
            config = hashlib.sha256(
                json.dumps(header["compiler"], sort_keys=True).encode()
            ).hexdigest()
            path = root / f"{self.model_sha256_}-{config[:12]}{_SUFFIX}"
            self.cache_path_ = path
        with tempfile.TemporaryDirectory(prefix="lendml-compile-") as work:
            model_file = Path(work) / "model.txt"
            model_file.write_text(model_text, encoding="utf-8")
            compiled = lleaves.Model(model_file=str(model_file))
            obj_file = Path(work) / "object.o"
            trusted = _read_entry(path, header) if path is not None else None
            if trusted is not None:
                # lleaves reads the object from this private copy, not from the cache
                # file, so what runs is exactly what was verified.
                obj_file.write_bytes(trusted)
                compiled.compile(cache=str(obj_file), **_OPTIONS)
                self.from_cache_ = True
                if not self._probe_error(compiled) <= TOLERANCE:
                    log.warning(
                        "Cached compiled object %s disagrees with the model on probe rows; "
                        "compiling afresh.",
                        path,
                    )
                    compiled = lleaves.Model(model_file=str(model_file))
                    obj_file.unlink()
                    trusted = None
                    self.from_cache_ = False
            if trusted is None:
                log.info(
                    "Compiling model %s… (%d trees) with lleaves; large models take minutes "
                    "the first time, then load from the cache.",
                    self.model_sha256_[:12],
                    compiled.num_trees(),
                )
                compiled.compile(cache=str(obj_file), **_OPTIONS)
                if path is not None and obj_file.is_file():
                    try:
                        _write_entry(path, header, obj_file.read_bytes())
                    except OSError as exc:  # a read-only or full disk: score uncached
                        log.warning(
                            "Could not cache the compiled model in %s (%s); it will be "
                            "compiled again next time.",
                            path.parent,
                            exc,
                        )
        return compiled


def _compiler_identity() -> dict[str, Any]:
    """What the object code depends on besides the model: versions, options, target CPU."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect the features on some hosts
        features = ""
    return {
        "lleaves": metadata.version("lleaves"),
        "llvmlite": metadata.version("llvmlite"),
        "options": _OPTIONS,
        "cpu": llvm.get_host_cpu_name(),
        "cpu_features": features,
        "triple": llvm.get_process_triple(),
    }


# --------------------------------------------------------------------------- cache entries
def _key(root: Path) -> bytes:
    """The cache folder's HMAC key: 32 random bytes, created once, readable by the owner."""
    path = root / _KEY_FILE
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".key-")
        try:
            with os.fdopen(fd, "wb") as fh:  # mkstemp creates it with mode 0600
                fh.write(secrets.token_bytes(32))
            # atomic create-if-absent: when two processes race, the first key wins
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(
            f"The compiled-model cache key {str(path)!r} is damaged ({len(key)} bytes, "
            "expected 32); delete the folder's .key file and every *.lleaves file in it."
        )
    return key


def _tag(key: bytes, header_bytes: bytes, obj: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(len(header_bytes).to_bytes(8, "big"))
    mac.update(header_bytes)
    mac.update(obj)
    return mac.digest()


def _write_entry(path: Path, header: Mapping[str, Any], obj: bytes) -> None:
    """Write ``header`` + object + HMAC to ``path`` atomically."""
    key = _key(path.parent)
    full = dict(header, object_sha256=hashlib.sha256(obj).hexdigest(), object_bytes=len(obj))
    head = json.dumps(full, sort_keys=True).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC)
            fh.write(len(head).to_bytes(8, "big"))
            fh.write(head)
            fh.write(_tag(key, head, obj))
            fh.write(obj)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("Cached the compiled model at %s (%d bytes).", path, len(obj))


def _read_entry(path: Path, header: Mapping[str, Any]) -> bytes | None:
    """The object in ``path`` if it is this cache's entry for exactly ``header``, else None
    (with the reason logged)."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    reason = None
    obj = b""
    head_len = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 8], "big")
    start = len(_MAGIC) + 8
    if not data.startswith(_MAGIC) or head_len > len(data):
        reason = "it is not a lendml compiled-object file"
    else:
        head = data[start : start + head_len]
        tag = data[start + head_len : start + head_len + 32]
        obj = data[start + head_len + 32 :]
        try:
            stored = json.loads(head)
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            reason = "its header is not readable"
        elif stored.get("model_sha256") != header["model_sha256"]:
            reason = (
                f"it was compiled from another model (sha256 "
                f"{str(stored.get('model_sha256'))[:12]}…, expected "
                f"{str(header['model_sha256'])[:12]}…)"
            )
        elif stored.get("compiler") != header["compiler"] or stored.get("format") != _FORMAT:
            reason = (
                "it was compiled by another compiler version, with other options or for another CPU"
            )
        elif stored.get("object_sha256") != hashlib.sha256(obj).hexdigest():
            reason = "its object code does not match the sha256 in its header"
        elif not hmac.compare_digest(tag, _tag(_key(path.parent), head, obj)):
            reason = "its signature does not verify with this cache's key (not written here)"
    if reason is not None:
        log.warning("Refusing the cached compiled object %s: %s; compiling afresh.", path, reason)
        return None
    return obj


# --------------------------------------------------------------------------- probe rows
def _model_facts(text: str) -> dict[str, Any]:
    """What the probe rows and the tiny-value rule need from the model text."""
    n_classes = 1
    thresholds: dict[int, set[float]] = {}
    categorical: set[int] = set()
    zero_tiny = False
    tree: dict[str, list[str]] = {}

    def flush() -> None:
        nonlocal zero_tiny
        features = tree.get("split_feature", [])
        values = tree.get("threshold", [])
        kinds = tree.get("decision_type", [])
        for feat_s, thr_s, kind_s in zip(features, values, kinds, strict=False):
            feat, kind = int(feat_s), int(kind_s)
            if kind & 1:  # categorical split: the threshold indexes its category set
                categorical.add(feat)
                continue
            thr = float(thr_s)
            thresholds.setdefault(feat, set()).add(thr)
            if (kind >> 2) & 3 == 1 or 0.0 < abs(thr) < _KZERO:
                # a "zero as missing" split, or a threshold lleaves could place
                # differently from LightGBM for values within 1e-35 of zero
                zero_tiny = True
        tree.clear()

    for line in text.splitlines():
        if line.startswith("Tree="):
            flush()
        elif line.startswith("num_class="):
            n_classes = int(line.partition("=")[2])
        elif line.startswith(("split_feature=", "threshold=", "decision_type=")):
            key, _, value = line.partition("=")
            tree[key] = value.split()
    flush()
    return {
        "n_classes": n_classes,
        "thresholds": thresholds,
        "categorical": categorical,
        "zero_tiny": zero_tiny,
    }


def _probe_rows(facts: Mapping[str, Any], n_features: int, n: int = 256) -> np.ndarray:
    """Rows that exercise every split: values at, just below and just above each
    threshold, zeros, tiny values, missing values and category codes (deterministic)."""
    rng = np.random.default_rng(0)
    candidates: list[np.ndarray] = []
    for j in range(n_features):
        values = [np.nan, 0.0, -0.0, 1e-36, -1e-36, _KZERO, np.inf, -np.inf]
        for thr in facts["thresholds"].get(j, ()):
            values += [thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf)]
        if j in facts["categorical"]:
            values += [float(c) for c in range(-1, 40)] + [0.5, 1.7]
        candidates.append(np.asarray(values, dtype=np.float64))
    rows = np.empty((n, n_features))
    rows[0], rows[1] = np.nan, 0.0
    for j, values in enumerate(candidates):
        rows[2:, j] = rng.choice(values, size=n - 2)
    return rows


__all__ = ["CACHE_ENV", "CompiledScorer", "default_cache_dir", "model_text_sha256"]
