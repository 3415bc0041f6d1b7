"""Real public credit datasets as lendml sources.

Each ``read_*`` function reads one dataset from its published files (a folder or the file
itself), checks the columns its README documents, and returns a :class:`PublicDataset`:
a pandas frame normalised for lendml (UTC event times, a 0/1 ``int8`` label, identifier
column names) plus the metadata a feature project needs: the entity key, the event-time
column, the label, the protected attributes (for fairness checks only, never model
inputs), the categorical columns and the columns known only after the outcome
(``post_outcome``).

:func:`export` writes the frame as Parquet (``timestamp[us, UTC]``) with a small
``dataset.json`` beside it, so a project can declare
``Source.parquet("<out>/<name>.parquet", timestamp=..., post_outcome=[...])``.

Time caveats (the data has less time than a lender's would):

* **Taiwan** has no dates. The six monthly statements cover April–September 2005 and the
  label is the default in the next month, so each client's row is stamped
  ``snapshot_at = 2005-10-01 00:00 UTC`` (:data:`TAIWAN_AS_OF`), the month after the last
  statement. :func:`taiwan_statements` melts the wide history into six dated events per
  client (month-end, 00:00 UTC) for windowed features.
* **Lending Club** has only ``Issue_Year``: ``issued_at`` is 1 January of that year, UTC.
  It is a coarse time: loans of one year are tied, so only year-level out-of-time splits
  are meaningful.
* **German credit** has no dates at all: ``snapshot_at`` is a placeholder constant
  (:data:`GERMAN_AS_OF`); use cross-validation, not out-of-time splits.
* **FDH** transactions carry real times (``TX_DATETIME``, naive in the file, read as UTC).

Examples
--------
>>> from lendml.datasets.public import PUBLIC_DATASETS, TAIWAN_AS_OF
>>> PUBLIC_DATASETS
('fdh', 'german', 'lending_club', 'taiwan')
>>> TAIWAN_AS_OF.isoformat()
'2005-10-01T00:00:00+00:00'
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lendml.errors import ConfigError, DataValidationError

#: As-of time of every Taiwan client row: the month after the last statement (Sep 2005).
TAIWAN_AS_OF = pd.Timestamp("2005-10-01", tz="UTC")
#: Placeholder event time of every German credit row (the data has no dates; 1994 is
#: the year the Statlog data set was donated).
GERMAN_AS_OF = pd.Timestamp("1994-01-01", tz="UTC")
#: Dataset names accepted by :func:`read_public` and ``lendml datasets import``.
PUBLIC_DATASETS = ("fdh", "german", "lending_club", "taiwan")

UTC_US = pa.timestamp("us", tz="UTC")
_PANDAS_UTC = "datetime64[us, UTC]"
METADATA_FILE = "dataset.json"

# Taiwan: (month-end statement date, PAY_ status column, BILL_AMT column, PAY_AMT column).
# PAY_0 / BILL_AMT1 / PAY_AMT1 are September 2005; the suffixes count back to April.
_TAIWAN_MONTHS = (
    ("2005-04-30", "PAY_6", "BILL_AMT6", "PAY_AMT6"),
    ("2005-05-31", "PAY_5", "BILL_AMT5", "PAY_AMT5"),
    ("2005-06-30", "PAY_4", "BILL_AMT4", "PAY_AMT4"),
    ("2005-07-31", "PAY_3", "BILL_AMT3", "PAY_AMT3"),
    ("2005-08-31", "PAY_2", "BILL_AMT2", "PAY_AMT2"),
    ("2005-09-30", "PAY_0", "BILL_AMT1", "PAY_AMT1"),
)
_TAIWAN_COLUMNS = (
    "ID",
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    *(m[1] for m in reversed(_TAIWAN_MONTHS)),
    *(m[2] for m in reversed(_TAIWAN_MONTHS)),
    *(m[3] for m in reversed(_TAIWAN_MONTHS)),
    "default.payment.next.month",
)
_LC_CATEGORICAL = (
    "term",
    "verification_status",
    "initial_list_status",
    "application_type",
    "verification_status_joint",
    "disbursement_method",
)
_LC_COLUMNS = (
    "row_id",
    "loan_amnt",
    "int_rate",
    "annual_inc",
    "dti",
    "fico_range_low",
    "fico_range_high",
    "revol_util",
    "Issue_Year",
    "bad",
    *_LC_CATEGORICAL,
)
_LC_LEAKAGE_COLUMNS = (
    "collection_recovery_fee",
    "last_pymnt_amnt",
    "last_fico_range_high",
    "last_fico_range_low",
    "debt_settlement_flag",
    "settlement_status",
    "hardship_flag",
    "hardship_type",
    "hardship_status",
    "pymnt_plan",
)
_FDH_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)
_GERMAN_CATEGORICAL = (
    "status_of_existing_checking_account",
    "credit_history",
    "purpose",
    "savings_account_and_bonds",
    "present_employment_since",
    "personal_status_and_sex",
    "other_debtors_or_guarantors",
    "property",
    "other_installment_plans",
    "housing",
    "job",
    "telephone",
    "foreign_worker",
)
_GERMAN_NUMERIC = (
    "duration_in_month",
    "credit_amount",
    "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since",
    "age_in_years",
    "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)


@dataclass(frozen=True, eq=False)
class PublicDataset:
    """One public dataset, normalised for lendml.

    Attributes
    ----------
    name
        ``taiwan``, ``lending_club``, ``fdh`` or ``german``; also the exported file's stem.
    frame
        One row per event (client, loan, transaction or applicant).
    entity_key
        The column a feature describes (``CUSTOMER_ID`` for FDH, the row id otherwise).
    row_id
        The column that identifies a row (unique).
    timestamp
        The event-time column, ``datetime64[us, UTC]`` (see the module's time caveats).
    label
        The 0/1 target, ``int8`` (1 = default, bad loan or fraud).
    protected
        Attributes kept for fairness checks only; never model inputs.
    categorical
        String or code columns to encode as categories.
    post_outcome
        Columns known only after the outcome; declare them ``post_outcome`` on a source.
    non_features
        Other identifiers and time columns that are not model inputs.
    time_note
        What the event time means and its caveat.
    source_files
        The files the frame was read from.
    """

    name: str
    frame: pd.DataFrame
    entity_key: str
    row_id: str
    timestamp: str
    label: str
    protected: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    post_outcome: tuple[str, ...] = ()
    non_features: tuple[str, ...] = ()
    time_note: str = ""
    source_files: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"PublicDataset({self.name!r}, rows={len(self.frame):,}, "
            f"positive_rate={self.positive_rate:.4f})"
        )

    @property
    def positive_rate(self) -> float:
        """Share of rows whose label is 1."""
        return float(self.frame[self.label].mean()) if len(self.frame) else float("nan")

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Columns usable as model inputs: all but ids, times, label, protected, leakage."""
        skip = {
            self.entity_key,
            self.row_id,
            self.timestamp,
            self.label,
            *self.protected,
            *self.post_outcome,
            *self.non_features,
        }
        return tuple(c for c in self.frame.columns if c not in skip)

    def to_arrow(self) -> pa.Table:
        """The frame as Arrow: ``timestamp[us, UTC]`` times, plain ``string`` text."""
        return _to_arrow(self.frame)

    def metadata(self, schema: pa.Schema | None = None) -> dict[str, Any]:
        """The JSON-ready description written to ``dataset.json`` by :func:`export`.

        ``schema`` is the Arrow schema of :meth:`to_arrow` when the caller has it.
        """
        schema = schema if schema is not None else self.to_arrow().schema
        return {
            "name": self.name,
            "file": f"{self.name}.parquet",
            "rows": len(self.frame),
            "positive_rate": round(self.positive_rate, 6),
            "entity_key": self.entity_key,
            "row_id": self.row_id,
            "timestamp": self.timestamp,
            "time_note": self.time_note,
            "label": self.label,
            "protected": list(self.protected),
            "categorical": list(self.categorical),
            "post_outcome": list(self.post_outcome),
            "feature_columns": list(self.feature_columns),
            "columns": {f.name: str(f.type) for f in schema},
            "source_files": [Path(f).name for f in self.source_files],
        }


# ---------------------------------------------------------------------------- helpers


def _locate(path: str | os.PathLike, names: Iterable[str], dataset: str) -> Path:
    """The dataset file: ``path`` itself, or the first of ``names`` inside a folder."""
    p = Path(path)
    names = tuple(names)
    if p.is_dir():
        for name in names:
            if (p / name).is_file():
                return p / name
        raise ConfigError(
            f"No {dataset} file in folder {str(p)!r}: expected one of {', '.join(names)}. "
            "Pass the dataset's folder (see its README) or the file itself.",
            path=str(p),
        )
    if p.is_file():
        return p
    raise ConfigError(
        f"{dataset} path {str(p)!r} does not exist: expected the dataset folder or its file "
        f"({', '.join(names)}).",
        path=str(p),
    )


def _require_columns(frame: pd.DataFrame, expected: Iterable[str], what: str, path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{what} file {str(path)!r} lacks the column(s) {missing}; found "
            f"{', '.join(map(str, frame.columns))}. Is this the file the dataset's README "
            "describes?",
            path=str(path),
        )


def _binary_label(values: pd.Series, column: str, path: Path) -> pd.Series:
    bad = sorted({v for v in values.dropna().unique().tolist() if v not in (0, 1)})
    if values.isna().any() or bad:
        shown = bad[:5] + (["<missing>"] if values.isna().any() else [])
        raise DataValidationError(
            f"Label {column!r} in {str(path)!r} must be 0 or 1; found {shown!r}. The file "
            "differs from the one the dataset's README describes.",
            path=str(path),
            column=column,
        )
    return values.astype("int8")


def _constant_time(ts: pd.Timestamp, n: int) -> pd.Series:
    return (
        pd.Series(np.full(n, ts.value // 1000, dtype="int64"))
        .astype("datetime64[us]")
        .dt.tz_localize("UTC")
    )


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_timestamp(t):
            t = UTC_US
        elif pa.types.is_large_string(t) or pa.types.is_null(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    # No pandas metadata: the file is read the same way by DuckDB, Spark and pyarrow.
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


def _read_parquet(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


# ---------------------------------------------------------------------------- readers


def read_taiwan(path: str | os.PathLike) -> PublicDataset:
    """Taiwan "default of credit card clients" (UCI id 350): 30,000 clients, 22.12% default.

    Parameters
    ----------
    path
        The ``taiwan-credit-default`` folder or ``UCI_Credit_Card.csv(.gz)``.

    Returns
    -------
    PublicDataset
        One row per client (``ID``), stamped ``snapshot_at`` = :data:`TAIWAN_AS_OF`; label
        ``default_payment_next_month`` (renamed from ``default.payment.next.month``).
    """
    file = _locate(path, ("UCI_Credit_Card.csv.gz", "UCI_Credit_Card.csv"), "Taiwan credit")
    frame = pd.read_csv(file)
    _require_columns(frame, _TAIWAN_COLUMNS, "Taiwan credit", file)
    frame = frame.rename(columns={"default.payment.next.month": "default_payment_next_month"})
    frame["default_payment_next_month"] = _binary_label(
        frame["default_payment_next_month"], "default.payment.next.month", file
    )
    frame["ID"] = frame["ID"].astype("int64")
    frame["snapshot_at"] = _constant_time(TAIWAN_AS_OF, len(frame))
    return PublicDataset(
        name="taiwan",
        frame=frame,
        entity_key="ID",
        row_id="ID",
        timestamp="snapshot_at",
        label="default_payment_next_month",
        protected=("SEX", "AGE", "EDUCATION", "MARRIAGE"),
        categorical=("SEX", "EDUCATION", "MARRIAGE"),
        time_note=(
            "No dates in the data: every row is stamped 2005-10-01 00:00 UTC, the month after "
            "the last monthly statement (Apr-Sep 2005); the label is the default in Oct 2005."
        ),
        source_files=(str(file),),
    )


def taiwan_statements(dataset: PublicDataset) -> pd.DataFrame:
    """The Taiwan monthly history as six dated events per client (long format).

    Columns: ``ID``, ``statement_at`` (month-end 00:00 UTC, 2005-04-30 .. 2005-09-30),
    ``PAY_STATUS`` (from ``PAY_6`` .. ``PAY_0``), ``BILL_AMT`` and ``PAY_AMT``; sorted by
    client and time.

    Examples
    --------
    >>> import pandas as pd
    >>> from lendml.datasets.public import PublicDataset, taiwan_statements
    >>> row = {"ID": [7]} | {c: [0] for c in ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5",
    ...        "PAY_6")} | {f"{p}{i}": [float(i)] for p in ("BILL_AMT", "PAY_AMT")
    ...        for i in range(1, 7)}
    >>> ds = PublicDataset("taiwan", pd.DataFrame(row), "ID", "ID", "snapshot_at", "y")
    >>> long = taiwan_statements(ds)
    >>> len(long), str(long["statement_at"].iloc[-1]), long["BILL_AMT"].tolist()
    (6, '2005-09-30 00:00:00+00:00', [6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    """
    if dataset.name != "taiwan":
        raise ConfigError(
            f"Monthly statements exist only for the 'taiwan' dataset, not {dataset.name!r}."
        )
    f = dataset.frame
    parts = []
    for month, pay, bill, amt in _TAIWAN_MONTHS:
        parts.append(
            pd.DataFrame(
                {
                    "ID": f["ID"].to_numpy(),
                    "statement_at": _constant_time(pd.Timestamp(month, tz="UTC"), len(f)),
                    "PAY_STATUS": f[pay].to_numpy(),
                    "BILL_AMT": f[bill].to_numpy(),
                    "PAY_AMT": f[amt].to_numpy(),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["ID", "statement_at"], kind="stable", ignore_index=True)


def read_lending_club(
    path: str | os.PathLike, *, leakage_path: str | os.PathLike | None = None
) -> PublicDataset:
    """Lending Club loans issued 2012-2014 (sample): 59,157 loans, 16.8% bad.

    Parameters
    ----------
    path
        The ``lendingclub-2012-2014-sample`` folder or ``lc_2012_2014.parquet``.
    leakage_path
        Optional: the same folder or ``lc_2012_2014_post_origination_leakage_cols.parquet``.
        Its ten post-origination columns are joined on ``row_id`` and declared
        ``post_outcome`` (they exist only to test leakage guards; never use them as
        features).

    Returns
    -------
    PublicDataset
        One row per loan (``row_id``); ``issued_at`` = 1 January of ``Issue_Year`` UTC (a
        coarse time); label ``bad``.
    """
    file = _locate(path, ("lc_2012_2014.parquet",), "Lending Club")
    frame = _read_parquet(file)
    _require_columns(frame, _LC_COLUMNS, "Lending Club", file)
    frame["bad"] = _binary_label(frame["bad"], "bad", file)
    frame["row_id"] = frame["row_id"].astype("int64")
    years = frame["Issue_Year"].astype("int64")
    frame["issued_at"] = pd.to_datetime({"year": years, "month": 1, "day": 1}, utc=True).astype(
        _PANDAS_UTC
    )
    for c in _LC_CATEGORICAL:
        frame[c] = frame[c].astype("str").where(frame[c].notna())
    files = [str(file)]
    post_outcome: tuple[str, ...] = ()
    if leakage_path is not None:
        leak_file = _locate(
            leakage_path,
            ("lc_2012_2014_post_origination_leakage_cols.parquet",),
            "Lending Club leakage",
        )
        leak = _read_parquet(leak_file)
        _require_columns(leak, ("row_id", *_LC_LEAKAGE_COLUMNS), "Lending Club leakage", leak_file)
        leak = leak[["row_id", *_LC_LEAKAGE_COLUMNS]].astype({"row_id": "int64"})
        if leak["row_id"].duplicated().any() or set(leak["row_id"]) != set(frame["row_id"]):
            raise DataValidationError(
                f"Leakage file {str(leak_file)!r} does not hold exactly one row per loan of "
                f"{str(file)!r} (joined on row_id); use the two files of the same folder.",
                path=str(leak_file),
            )
        frame = frame.merge(leak, on="row_id", how="left", validate="one_to_one")
        post_outcome = _LC_LEAKAGE_COLUMNS
        files.append(str(leak_file))
    return PublicDataset(
        name="lending_club",
        frame=frame,
        entity_key="row_id",
        row_id="row_id",
        timestamp="issued_at",
        label="bad",
        protected=(),
        categorical=_LC_CATEGORICAL,
        post_outcome=post_outcome,
        non_features=("Issue_Year",),
        time_note=(
            "Only the issue year is known: issued_at is 1 January of Issue_Year, 00:00 UTC. "
            "Loans of one year share a time, so use year-level out-of-time splits "
            "(train 2012-2013, test 2014); a 2014 loan's label may be immature (Current = good)."
        ),
        source_files=tuple(files),
    )


def read_fdh(path: str | os.PathLike) -> PublicDataset:
    """Fraud Detection Handbook simulated transactions: 1,754,155 tx, 0.837% fraud.

    Parameters
    ----------
    path
        The ``fdh-simulated-transactions`` folder or ``transactions.parquet``.

    Returns
    -------
    PublicDataset
        One row per transaction (``TRANSACTION_ID``), entity ``CUSTOMER_ID``, event time
        ``TX_DATETIME`` (UTC), label ``TX_FRAUD``. ``TX_FRAUD_SCENARIO`` (how the fraud was
        generated) is known only after the outcome and is declared ``post_outcome``.
    """
    file = _locate(path, ("transactions.parquet",), "FDH transactions")
    frame = _read_parquet(file)
    _require_columns(frame, _FDH_COLUMNS, "FDH transactions", file)
    frame["TX_FRAUD"] = _binary_label(frame["TX_FRAUD"], "TX_FRAUD", file)
    ts = frame["TX_DATETIME"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC")
    else:  # naive in the published file: naive means UTC
        ts = ts.dt.tz_localize("UTC")
    frame["TX_DATETIME"] = ts.astype(_PANDAS_UTC)
    return PublicDataset(
        name="fdh",
        frame=frame,
        entity_key="CUSTOMER_ID",
        row_id="TRANSACTION_ID",
        timestamp="TX_DATETIME",
        label="TX_FRAUD",
        protected=(),
        categorical=(),
        post_outcome=("TX_FRAUD_SCENARIO",),
        non_features=("TERMINAL_ID", "TX_TIME_SECONDS", "TX_TIME_DAYS"),
        time_note=(
            "Real transaction times (2018-04-01 .. 2018-09-30), naive in the file and read "
            "as UTC. A fraud label is known only after investigation: use TX_FRAUD as a "
            "feature only with an offset (the handbook uses a 7-day delay)."
        ),
        source_files=(str(file),),
    )


def read_german(path: str | os.PathLike) -> PublicDataset:
    """Statlog German credit (UCI id 144): 1,000 applicants, 30% bad.

    Parameters
    ----------
    path
        The ``german-credit`` folder or ``germancredit.csv(.gz)``.

    Returns
    -------
    PublicDataset
        One row per applicant; ``applicant_id`` (1..1000, file order) is added as the key,
        ``snapshot_at`` is the placeholder :data:`GERMAN_AS_OF`, and ``creditability``
        (good/bad) becomes the label ``bad`` (1 = bad).
    """
    file = _locate(path, ("germancredit.csv.gz", "germancredit.csv"), "German credit")
    frame = pd.read_csv(file)
    _require_columns(
        frame,
        (*_GERMAN_CATEGORICAL, *_GERMAN_NUMERIC, "creditability"),
        "German credit",
        file,
    )
    values = set(frame["creditability"].dropna().unique().tolist())
    if frame["creditability"].isna().any() or not values <= {"good", "bad"}:
        raise DataValidationError(
            f"Column 'creditability' in {str(file)!r} must be 'good' or 'bad'; found "
            f"{sorted(map(str, values - {'good', 'bad'}))[:5]!r}"
            f"{' and missing values' if frame['creditability'].isna().any() else ''}.",
            path=str(file),
            column="creditability",
        )
    frame = frame.drop(columns="creditability").assign(
        bad=(frame["creditability"] == "bad").astype("int8")
    )
    frame.insert(0, "applicant_id", np.arange(1, len(frame) + 1, dtype="int64"))
    frame["snapshot_at"] = _constant_time(GERMAN_AS_OF, len(frame))
    return PublicDataset(
        name="german",
        frame=frame,
        entity_key="applicant_id",
        row_id="applicant_id",
        timestamp="snapshot_at",
        label="bad",
        protected=("personal_status_and_sex", "age_in_years", "foreign_worker"),
        categorical=_GERMAN_CATEGORICAL,
        time_note=(
            "No dates in the data: snapshot_at is a placeholder constant (1994-01-01 UTC). "
            "Use cross-validation; out-of-time splits are impossible."
        ),
        source_files=(str(file),),
    )


_READERS: dict[str, Callable[..., PublicDataset]] = {
    "fdh": read_fdh,
    "german": read_german,
    "lending_club": read_lending_club,
    "taiwan": read_taiwan,
}


def read_public(name: str, path: str | os.PathLike, **options: Any) -> PublicDataset:
    """Read a public dataset by name (one of :data:`PUBLIC_DATASETS`).

    ``options`` go to the reader (``leakage_path=`` for ``lending_club``).
    """
    key = name.replace("-", "_").lower()
    if key not in _READERS:
        raise ConfigError(
            f"Unknown public dataset {name!r}: expected one of {', '.join(PUBLIC_DATASETS)}."
        )
    return _READERS[key](path, **options)


# ---------------------------------------------------------------------------- export


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export(dataset: PublicDataset, out_dir: str | os.PathLike, *, statements: bool = False) -> Path:
    """Write a dataset as ``<out_dir>/<name>.parquet`` plus ``<out_dir>/dataset.json``.

    Each file is written to a temporary name and renamed, so a reader never sees a partial
    file and a re-run replaces the same files. Timestamps are ``timestamp[us, UTC]``.

    Parameters
    ----------
    dataset
        What a ``read_*`` function returned.
    out_dir
        A folder for this one dataset (created if needed).
    statements
        Taiwan only: also write ``taiwan_statements.parquet``, the monthly history as six
        dated events per client (see :func:`taiwan_statements`).

    Returns
    -------
    Path
        The Parquet file to declare as a source.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a folder for the export.")
    meta_path = out / METADATA_FILE
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text()).get("name")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ConfigError(
                f"{str(meta_path)!r} is not a lendml dataset description; export into an "
                "empty folder.",
                path=str(meta_path),
            ) from exc
        if previous != dataset.name:
            raise ConfigError(
                f"Folder {str(out)!r} already holds the export of {previous!r}; export "
                f"{dataset.name!r} into its own folder.",
                path=str(out),
            )
    if statements and dataset.name != "taiwan":
        raise ConfigError(
            f"statements=True applies to 'taiwan' only, not {dataset.name!r}; drop the option."
        )
    out.mkdir(parents=True, exist_ok=True)
    table = dataset.to_arrow()
    meta = dataset.metadata(table.schema)
    meta["source"] = {
        "format": "parquet",
        "path": meta["file"],
        "timestamp": dataset.timestamp,
        "post_outcome": list(dataset.post_outcome),
    }
    target = out / meta["file"]
    _write_atomic(target, lambda p: pq.write_table(table, p, compression="zstd"))
    if statements:
        long = _to_arrow(taiwan_statements(dataset))
        _write_atomic(
            out / "taiwan_statements.parquet",
            lambda p: pq.write_table(long, p, compression="zstd"),
        )
        meta["statements"] = {
            "file": "taiwan_statements.parquet",
            "rows": long.num_rows,
            "entity_key": "ID",
            "timestamp": "statement_at",
        }
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _write_atomic(meta_path, lambda p: p.write_text(text))
    return target


__all__ = [
    "GERMAN_AS_OF",
    "PUBLIC_DATASETS",
    "TAIWAN_AS_OF",
    "PublicDataset",
    "export",
    "read_fdh",
    "read_german",
    "read_lending_club",
    "read_public",
    "read_taiwan",
    "taiwan_statements",
]
