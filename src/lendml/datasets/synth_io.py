"""Arrow schemas of the synthetic world's tables and the Parquet writer for them.

Files are written without the Arrow schema in their metadata: string columns built as
dictionaries then read back as plain ``string``, and timestamps as
``timestamp[us, tz=UTC]`` (Parquet's UTC-adjusted microseconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lendml.datasets.synth_bureau import Bureau
from lendml.datasets.synth_calendar import Calendar
from lendml.datasets.synth_population import (
    AGE_GROUPS,
    APP_CHANNELS,
    ETHNICITIES,
    GENDERS,
    PURPOSES,
    REGIONS,
    Applications,
    Population,
    age_group,
)
from lendml.datasets.synth_risk import Outcomes
from lendml.datasets.synth_transactions import (
    CATEGORIES,
    DIRECTIONS,
    TX_CHANNELS,
    Transactions,
)

TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "borrowers": pa.schema(
        [
            ("borrower_id", pa.int64()),
            ("created_at", TIMESTAMP),
            ("region", pa.string()),
            ("age", pa.int32()),
            ("employment_years", pa.float64()),
            ("home_owner", pa.bool_()),
            ("gender", pa.string()),
            ("age_group", pa.string()),
            ("ethnicity", pa.string()),
        ]
    ),
    "applications": pa.schema(
        [
            ("application_id", pa.int64()),
            ("borrower_id", pa.int64()),
            ("applied_at", TIMESTAMP),
            ("loan_amount", pa.float64()),
            ("term_months", pa.int32()),
            ("purpose", pa.string()),
            ("stated_income", pa.float64()),
            ("channel", pa.string()),
            ("requested_rate", pa.float64()),
        ]
    ),
    "bureau": pa.schema(
        [
            ("borrower_id", pa.int64()),
            ("snapshot_at", TIMESTAMP),
            ("fico", pa.int32()),
            ("num_tradelines", pa.int32()),
            ("revolving_utilization", pa.float64()),
            ("delinquencies_12m", pa.int32()),
            ("inquiries_6m", pa.int32()),
            ("total_balance", pa.float64()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("tx_id", pa.int64()),
            ("borrower_id", pa.int64()),
            ("tx_at", TIMESTAMP),
            ("amount", pa.float64()),
            ("direction", pa.string()),
            ("category", pa.string()),
            ("channel", pa.string()),
        ]
    ),
    "outcomes": pa.schema(
        [
            ("application_id", pa.int64()),
            ("borrower_id", pa.int64()),
            ("applied_at", TIMESTAMP),
            ("defaulted", pa.int32()),
            ("default_at", TIMESTAMP),
            ("observed_at", TIMESTAMP),
        ]
    ),
}
TABLES = tuple(SCHEMAS)
# Large tables are Hive-partitioned by the month of their event time: month=YYYY-MM/.
PARTITIONED = ("bureau", "transactions")


def _timestamps(seconds: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(
        np.asarray(seconds, dtype=np.int64) * 1_000_000, type=pa.int64(), mask=mask
    ).view(TIMESTAMP)


def _strings(codes: np.ndarray, values: tuple[str, ...]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int8)), pa.array(values, type=pa.string())
    )


def _table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    """A table with the contract's column order (strings still dictionary-encoded)."""
    return pa.table([columns[field.name] for field in SCHEMAS[name]], names=SCHEMAS[name].names)


def borrowers_table(pop: Population) -> pa.Table:
    """The ``borrowers`` rows of a chunk."""
    return _table(
        "borrowers",
        {
            "borrower_id": pa.array(pop.borrower_id),
            "created_at": _timestamps(pop.created),
            "region": _strings(pop.region, REGIONS),
            "age": pa.array(pop.age, type=pa.int32()),
            "employment_years": pa.array(pop.employment_years),
            "home_owner": pa.array(pop.home_owner),
            "gender": _strings(pop.gender, GENDERS),
            "age_group": _strings(age_group(pop.age), AGE_GROUPS),
            "ethnicity": _strings(pop.ethnicity, ETHNICITIES),
        },
    )


def applications_table(pop: Population, apps: Applications) -> pa.Table:
    """The ``applications`` rows of a chunk."""
    return _table(
        "applications",
        {
            "application_id": pa.array(apps.application_id),
            "borrower_id": pa.array(pop.borrower_id[apps.borrower]),
            "applied_at": _timestamps(apps.applied),
            "loan_amount": pa.array(apps.loan_amount),
            "term_months": pa.array(apps.term, type=pa.int32()),
            "purpose": _strings(apps.purpose, PURPOSES),
            "stated_income": pa.array(apps.stated_income),
            "channel": _strings(apps.channel, APP_CHANNELS),
            "requested_rate": pa.array(apps.requested_rate),
        },
    )


def outcomes_table(pop: Population, apps: Applications, outcomes: Outcomes) -> pa.Table:
    """The ``outcomes`` rows of a chunk (the truth, including labels not yet observable)."""
    defaulted = outcomes.defaulted.astype(bool)
    return _table(
        "outcomes",
        {
            "application_id": pa.array(apps.application_id),
            "borrower_id": pa.array(pop.borrower_id[apps.borrower]),
            "applied_at": _timestamps(apps.applied),
            "defaulted": pa.array(outcomes.defaulted, type=pa.int32()),
            "default_at": _timestamps(outcomes.default_at, valid=defaulted),
            "observed_at": _timestamps(outcomes.observed_at),
        },
    )


def bureau_table(pop: Population, bureau: Bureau) -> tuple[pa.Table, np.ndarray]:
    """The ``bureau`` rows of a chunk, ordered by month then borrower, and their months."""
    order = np.lexsort((bureau.borrower, bureau.month))
    util = bureau.revolving_utilization[order]
    table = _table(
        "bureau",
        {
            "borrower_id": pa.array(pop.borrower_id[bureau.borrower[order]]),
            "snapshot_at": _timestamps(bureau.snapshot[order]),
            "fico": pa.array(bureau.fico[order], type=pa.int32()),
            "num_tradelines": pa.array(bureau.num_tradelines[order], type=pa.int32()),
            "revolving_utilization": pa.array(util, mask=np.isnan(util)),
            "delinquencies_12m": pa.array(bureau.delinquencies_12m[order], type=pa.int32()),
            "inquiries_6m": pa.array(bureau.inquiries_6m[order], type=pa.int32()),
            "total_balance": pa.array(bureau.total_balance[order]),
        },
    )
    return table, bureau.month[order]


def transactions_table(pop: Population, tx: Transactions, *, first_id: int) -> pa.Table:
    """The ``transactions`` rows of a chunk with ids from ``first_id``.

    Ids follow the rows' order (month, borrower, time), so within a borrower a larger
    ``tx_id`` is never earlier: it breaks ties between transactions in the same second.
    """
    return _table(
        "transactions",
        {
            "tx_id": pa.array(first_id + np.arange(len(tx), dtype=np.int64)),
            "borrower_id": pa.array(pop.borrower_id[tx.borrower]),
            "tx_at": _timestamps(tx.tx_at),
            "amount": pa.array(tx.amount),
            "direction": _strings(tx.direction, DIRECTIONS),
            "category": _strings(tx.category, CATEGORIES),
            "channel": _strings(tx.channel, TX_CHANNELS),
        },
    )


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write one Parquet file (deterministic: same table, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", store_schema=False)


def part_name(part: int) -> str:
    """File name of a chunk's part."""
    return f"part-{part}.parquet"


def write_table_part(root: Path, name: str, part: int, table: pa.Table) -> None:
    """Write an unpartitioned table's part for one chunk."""
    if table.num_rows:
        write_parquet(root / name / part_name(part), table)


def write_partitioned_part(
    root: Path, name: str, part: int, table: pa.Table, month: np.ndarray, cal: Calendar
) -> None:
    """Write one chunk's rows of a month-partitioned table, one file per month.

    ``month`` is each row's month index and must be sorted.
    """
    bounds = np.searchsorted(month, np.arange(cal.months + 1), side="left")
    for m, label in enumerate(cal.labels):
        lo, hi = int(bounds[m]), int(bounds[m + 1])
        if hi > lo:
            write_parquet(
                root / name / f"month={label}" / part_name(part), table.slice(lo, hi - lo)
            )


@dataclass(frozen=True)
class ChunkTables:
    """One chunk's rows of every table, ready to be written.

    ``months`` holds, for each month-partitioned table, the sorted month index of its rows.
    """

    index: int
    tables: Mapping[str, pa.Table]
    months: Mapping[str, np.ndarray]


def write_chunk(root: Path, cal: Calendar, chunk: ChunkTables) -> None:
    """Write every table of a chunk under ``root``."""
    for name, table in chunk.tables.items():
        if name in PARTITIONED:
            write_partitioned_part(root, name, chunk.index, table, chunk.months[name], cal)
        else:
            write_table_part(root, name, chunk.index, table)


def write_empty(root: Path, name: str, cal: Calendar) -> None:
    """Give a table without rows one empty file, so readers still find its schema."""
    folder = root / name / f"month={cal.labels[0]}" if name in PARTITIONED else root / name
    write_parquet(folder / part_name(0), SCHEMAS[name].empty_table())
