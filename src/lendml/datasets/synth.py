"""A synthetic lending business, written as Parquet: the default data of lendml.

:func:`generate_world` draws borrowers, their loan applications, monthly bureau
snapshots, bank and card transactions, and repayment outcomes, deterministically for a
seed, in chunks of borrowers so memory stays bounded at any scale.

Layout under ``out_dir``::

    world.json                                  config, row counts, default rates
    borrowers/part-<chunk>.parquet
    applications/part-<chunk>.parquet
    bureau/month=YYYY-MM/part-<chunk>.parquet      Hive-partitioned by snapshot month
    transactions/month=YYYY-MM/part-<chunk>.parquet  Hive-partitioned by tx month
    outcomes/part-<chunk>.parquet

Tables (every timestamp is ``timestamp[us, tz=UTC]``):

``borrowers``
    borrower_id, created_at, region, age, employment_years, home_owner, and the
    protected attributes gender, age_group, ethnicity. **Protected attributes are for
    fairness tests only and are never model inputs**; the truth model does not use them
    (ethnicity relates to region only, so any disparity comes through proxies).
``applications``
    application_id, borrower_id, applied_at, loan_amount, term_months (12/24/36/60),
    purpose, stated_income (monthly, gross, sometimes inflated), channel, requested_rate
    (annual, a fraction). Every application is at least 35 days after ``created_at``.
``bureau``
    borrower_id, snapshot_at (first of the month, 00:00 UTC), fico (300-850),
    num_tradelines, revolving_utilization (0-1.5, ~2% null), delinquencies_12m,
    inquiries_6m, total_balance. Unique on (borrower_id, snapshot_at); one row per
    month from the first month start at or after ``created_at`` to the world's end.
``transactions``
    tx_id, borrower_id, tx_at (whole seconds), amount (positive), direction (``credit``
    for salary and other income deposits, else ``debit``), category (salary,
    transfer_in, housing, utilities, groceries, dining, transport, shopping,
    transfer_out, cash_advance, gambling), channel (pos, online, atm, ach). About
    ``tx_per_borrower_month`` per active borrower-month; a borrower is active from
    ``created_at`` until a few months after their last application. Within a borrower
    a larger tx_id is never earlier, so it breaks ties in the same second.
``outcomes``
    application_id, borrower_id, applied_at, defaulted (0/1 within the horizon),
    default_at (null unless defaulted), observed_at (applied_at + horizon months: the
    label is known only from then). Every application has its outcome, including those
    observed after the world's end: filter on ``observed_at`` to use only known labels.

How default is decided and how the macro shock works: :mod:`lendml.datasets.synth_risk`;
the latent stress that only the order of transactions reveals:
:mod:`lendml.datasets.synth_transactions`.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from lendml.datasets import synth_io
from lendml.datasets.synth_bureau import build_bureau
from lendml.datasets.synth_calendar import Calendar, build_calendar
from lendml.datasets.synth_population import build_applications, build_population
from lendml.datasets.synth_risk import build_outcomes
from lendml.datasets.synth_transactions import build_transactions
from lendml.errors import ConfigError

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same config would produce different data."""

_TMP_PREFIX = ".lendml-synth-"
_MANIFEST = "world.json"
_STREAMS = ("population", "applications", "bureau", "outcomes", "transactions")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(
            f"The {name!r} argument of generate_world must be an int in the range "
            f"[{low}, {high}]. Got {value!r} of type {type(value).__name__} instead.",
            argument=name,
        )
    if not low <= value <= high:
        raise ConfigError(
            f"The {name!r} argument of generate_world must be an int in the range "
            f"[{low}, {high}]. Got {value!r} instead.",
            argument=name,
        )


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides the content of a synthetic world.

    Two worlds with equal configs are byte-identical (with the same lendml and pyarrow
    versions: pyarrow writes its version into each file). Validation happens on
    construction and raises :class:`~lendml.errors.ConfigError` naming the argument,
    the bad value and the allowed range.

    Parameters
    ----------
    borrowers
        Number of borrowers (about one application each).
    seed
        Seed of every random draw.
    start
        First day of the world, an ISO date on the first of a month.
    months
        Length of the world in calendar months.
    shift_month
        Month index (0 = the first month) from which the macro shock holds, or ``None``
        for a world without one.
    outcome_horizon_months
        A default counts if it happens within this many months of the application; the
        label is observed that long after it.
    tx_per_borrower_month
        Mean number of transactions of a borrower in a full active month.
    chunk_borrowers
        Borrowers generated together. It bounds memory, and it is part of the world's
        identity: another chunk size draws other (equally valid) random numbers.
    """

    borrowers: int
    seed: int = 42
    start: str = "2023-01-01"
    months: int = 24
    shift_month: int | None = 15
    outcome_horizon_months: int = 12
    tx_per_borrower_month: float = 8.0
    chunk_borrowers: int = 50_000

    def __post_init__(self) -> None:
        _check_int("borrowers", self.borrowers, 1, 1_000_000_000)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("months", self.months, 1, 600)
        if self.shift_month is not None:
            if self.months < 2:
                raise ConfigError(
                    f"The 'shift_month' argument of generate_world must be None when "
                    f"'months' is {self.months}: a shift needs months before and after it. "
                    f"Got {self.shift_month!r} instead.",
                    argument="shift_month",
                )
            _check_int("shift_month", self.shift_month, 1, self.months - 1)
        _check_int("outcome_horizon_months", self.outcome_horizon_months, 1, 120)
        _check_int("chunk_borrowers", self.chunk_borrowers, 1, 5_000_000)
        rate = self.tx_per_borrower_month
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 4 <= rate <= 1000:
            raise ConfigError(
                "The 'tx_per_borrower_month' argument of generate_world must be a float in "
                f"the range [4.0, 1000.0] (salary, rent and a utility bill take 3). Got "
                f"{rate!r} instead.",
                argument="tx_per_borrower_month",
            )
        try:
            first = date.fromisoformat(self.start) if isinstance(self.start, str) else None
        except ValueError:
            first = None
        if first is None or first.day != 1 or not 1971 <= first.year <= 2200:
            raise ConfigError(
                "The 'start' argument of generate_world must be an ISO date on the first "
                f"day of a month between 1971 and 2200, such as '2023-01-01'. Got "
                f"{self.start!r} instead.",
                argument="start",
            )
        # Normalise so equal worlds have equal configs (and a JSON-ready world.json).
        for name in ("borrowers", "seed", "months", "outcome_horizon_months", "chunk_borrowers"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.shift_month is not None:
            object.__setattr__(self, "shift_month", int(self.shift_month))
        object.__setattr__(self, "tx_per_borrower_month", float(rate))
        object.__setattr__(self, "start", first.isoformat())

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`generate_world` wrote.

    Parameters
    ----------
    out_dir
        Folder of the world.
    config
        The config that made it.
    row_counts
        Rows per table.
    default_rate_pre_shift
        Share of applications before the shock month that default within the horizon
        (all applications when there is no shock; ``None`` if there are none).
    default_rate_post_shift
        The same from the shock month on (``None`` without a shock or applications).
    """

    out_dir: Path
    config: WorldConfig
    row_counts: Mapping[str, int] = field(default_factory=dict)
    default_rate_pre_shift: float | None = None
    default_rate_post_shift: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "row_counts", MappingProxyType(dict(self.row_counts)))

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        return {
            "out_dir": str(self.out_dir),
            "config": self.config.to_dict(),
            "row_counts": dict(self.row_counts),
            "default_rate_pre_shift": self.default_rate_pre_shift,
            "default_rate_post_shift": self.default_rate_post_shift,
        }


def generate_world(
    out_dir: str | os.PathLike[str],
    *,
    borrowers: int,
    seed: int = 42,
    start: str = "2023-01-01",
    months: int = 24,
    shift_month: int | None = 15,
    outcome_horizon_months: int = 12,
    tx_per_borrower_month: float = 8.0,
    chunk_borrowers: int = 50_000,
    overwrite: bool = False,
) -> WorldSummary:
    """Write a deterministic synthetic lending business as Parquet under ``out_dir``.

    The same arguments give byte-identical files. Everything is written into a
    temporary folder inside ``out_dir`` and moved into place at the end, so a failed run
    leaves ``out_dir`` as it was. The tables and the world's rules are described in
    :mod:`lendml.datasets.synth`.

    Parameters
    ----------
    out_dir
        Folder to write to; created if missing. It must be empty unless ``overwrite``.
    borrowers, seed, start, months, shift_month, outcome_horizon_months, \
tx_per_borrower_month, chunk_borrowers
        See :class:`WorldConfig`.
    overwrite
        Replace the tables and ``world.json`` of a world already in ``out_dir`` (other
        files there are left alone).

    Returns
    -------
    WorldSummary
        Row counts and default rates of what was written.

    Raises
    ------
    lendml.errors.ConfigError
        For an argument out of its range, or a non-empty ``out_dir`` without
        ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from lendml.datasets import generate_world
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     summary = generate_world(tmp, borrowers=300, months=6, shift_month=3)
    >>> summary.row_counts["borrowers"]
    300
    >>> sorted(summary.row_counts)
    ['applications', 'borrowers', 'bureau', 'outcomes', 'transactions']
    """
    config = WorldConfig(
        borrowers=borrowers,
        seed=seed,
        start=start,
        months=months,
        shift_month=shift_month,
        outcome_horizon_months=outcome_horizon_months,
        tx_per_borrower_month=tx_per_borrower_month,
        chunk_borrowers=chunk_borrowers,
    )
    if not isinstance(overwrite, bool):
        raise ConfigError(
            f"The 'overwrite' argument of generate_world must be a bool. Got {overwrite!r} "
            "instead.",
            argument="overwrite",
        )
    out = Path(out_dir)
    created = not out.exists()
    _prepare_out_dir(out, overwrite=overwrite)
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=out))
    try:
        summary = _generate_into(staging, config)
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "partitioned_by_month": list(synth_io.PARTITIONED),
            **summary,
        }
        text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
        (staging / _MANIFEST).write_text(text, encoding="utf-8")
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return WorldSummary(
        out_dir=out,
        config=config,
        row_counts=summary["row_counts"],
        default_rate_pre_shift=summary["default_rate_pre_shift"],
        default_rate_post_shift=summary["default_rate_post_shift"],
    )


def _prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"The 'out_dir' argument of generate_world must be a folder. Got {str(out)!r}, "
            "which is a file.",
            argument="out_dir",
        )
    out.mkdir(parents=True, exist_ok=True)
    entries = sorted(p.name for p in out.iterdir())
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    if entries and not overwrite:
        raise ConfigError(
            f"The 'out_dir' argument of generate_world must be an empty or new folder. Got "
            f"{str(out)!r}, which holds {shown}. Pass overwrite=True to replace a world "
            "there, or choose another folder.",
            argument="out_dir",
        )
    if entries and _MANIFEST not in entries and set(entries) & set(synth_io.TABLES):
        # Fail closed: never delete folders named like our tables that we did not write.
        raise ConfigError(
            f"The 'out_dir' argument of generate_world holds {shown} but no {_MANIFEST}, "
            f"so {str(out)!r} is not a world written by generate_world and overwrite=True "
            "will not replace it. Choose another folder or empty this one.",
            argument="out_dir",
        )
    # Leftovers of an interrupted run.
    for stale in out.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(stale)


def _publish(staging: Path, out: Path) -> None:
    """Move the finished tables, then ``world.json``, from staging into ``out``."""
    replaced = staging / "replaced"
    replaced.mkdir()
    moved: list[str] = []
    try:
        for name in (*synth_io.TABLES, _MANIFEST):
            target = out / name
            if target.exists():
                os.replace(target, replaced / name)
            moved.append(name)
            os.replace(staging / name, target)
    except OSError:
        # Put back what was there before; the new world stays in staging (then removed).
        for name in reversed(moved):
            if (replaced / name).exists():
                new = out / name
                if new.is_dir():
                    shutil.rmtree(new)
                elif new.exists():
                    new.unlink()
                os.replace(replaced / name, new)
        raise


def _rate(defaults: int, total: int) -> float | None:
    return round(defaults / total, 6) if total else None


def _generate_into(root: Path, config: WorldConfig) -> dict[str, Any]:
    """Generate every chunk into ``root``; return row counts and default rates.

    A writer thread writes chunk ``i`` while chunk ``i + 1`` is drawn (Parquet encoding
    and most numpy work release the GIL), holding at most two chunks in memory.
    """
    cal = build_calendar(config.start, config.months, config.shift_month)
    counts = dict.fromkeys(synth_io.TABLES, 0)
    apps_by_regime = np.zeros(2, dtype=np.int64)
    defaults_by_regime = np.zeros(2, dtype=np.int64)
    n_chunks = -(-config.borrowers // config.chunk_borrowers)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lendml-synth-writer") as writer:
        pending: Future[None] | None = None
        for index in range(n_chunks):
            first = index * config.chunk_borrowers
            n = min(config.chunk_borrowers, config.borrowers - first)
            chunk, apps_post, defaulted = _generate_chunk(config, cal, index, first, n, counts)
            for table, rows in chunk.tables.items():
                counts[table] += rows.num_rows
            apps_by_regime += np.bincount(apps_post, minlength=2)
            defaults_by_regime += np.bincount(apps_post[defaulted == 1], minlength=2)
            if pending is not None:
                pending.result()  # raises what the writer raised
            pending = writer.submit(synth_io.write_chunk, root, cal, chunk)
            del chunk
            logger.info(
                "synthetic world: chunk %d/%d drawn (%d borrowers, %d transactions so far)",
                index + 1,
                n_chunks,
                first + n,
                counts["transactions"],
            )
        if pending is not None:
            pending.result()
    for table, count in counts.items():
        if count == 0:
            synth_io.write_empty(root, table, cal)
    if config.shift_month is None:
        pre = _rate(int(defaults_by_regime.sum()), int(apps_by_regime.sum()))
        post = None
    else:
        pre = _rate(int(defaults_by_regime[0]), int(apps_by_regime[0]))
        post = _rate(int(defaults_by_regime[1]), int(apps_by_regime[1]))
    return {
        "config": config.to_dict(),
        "row_counts": counts,
        "default_rate_pre_shift": pre,
        "default_rate_post_shift": post,
    }


def _generate_chunk(
    config: WorldConfig,
    cal: Calendar,
    index: int,
    first: int,
    n: int,
    counts_so_far: Mapping[str, int],
) -> tuple[synth_io.ChunkTables, np.ndarray, np.ndarray]:
    """Draw one chunk of borrowers and everything about them.

    Each table draws from its own random stream, so e.g. changing the transaction rate
    leaves borrowers, applications, bureau and outcomes unchanged. Returns the chunk's
    tables and, per application, whether it is after the shock and whether it defaulted.
    """
    seeds = np.random.SeedSequence([config.seed, index]).spawn(len(_STREAMS))
    rng = {name: np.random.default_rng(s) for name, s in zip(_STREAMS, seeds, strict=True)}

    pop, app_borrower, app_time = build_population(rng["population"], cal, first_id=first + 1, n=n)
    apps = build_applications(
        rng["applications"],
        cal,
        pop,
        app_borrower,
        app_time,
        first_id=counts_so_far["applications"] + 1,
    )
    bureau, at_app = build_bureau(rng["bureau"], cal, pop, apps)
    outcomes = build_outcomes(
        rng["outcomes"], pop, apps, at_app, horizon_months=config.outcome_horizon_months
    )
    bureau_rows, bureau_month = synth_io.bureau_table(pop, bureau)
    del bureau
    tx = build_transactions(
        rng["transactions"], cal, pop, tx_per_borrower_month=config.tx_per_borrower_month
    )
    chunk = synth_io.ChunkTables(
        index=index,
        tables={
            "borrowers": synth_io.borrowers_table(pop),
            "applications": synth_io.applications_table(pop, apps),
            "bureau": bureau_rows,
            "transactions": synth_io.transactions_table(
                pop, tx, first_id=counts_so_far["transactions"] + 1
            ),
            "outcomes": synth_io.outcomes_table(pop, apps, outcomes),
        },
        months={"bureau": bureau_month, "transactions": tx.month},
    )
    return chunk, apps.post_shift.astype(np.int64), outcomes.defaulted
