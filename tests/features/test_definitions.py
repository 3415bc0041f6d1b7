"""Bad definitions are refused with messages that name the definition, value and fix."""

from __future__ import annotations

import pandas as pd
import pytest

from lendml import (
    Aggregation,
    DefinitionError,
    Derived,
    DerivedView,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    LeakageError,
    Source,
)
from lendml.features import expr
from lendml.features.validate import validate_definitions


@pytest.fixture
def src(tmp_path):
    df = pd.DataFrame(
        {
            "cid": [1, 2],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "amount": [1.0, 2.0],
            "channel": ["web", "app"],
            "recovery_fee": [0.0, 5.0],
        }
    )
    path = tmp_path / "tx.parquet"
    df.to_parquet(path)
    return Source.parquet(str(path), timestamp="ts", post_outcome=["recovery_fee"])


CUST = Entity("customer", key="cid")


def _validate(*views, services=()):
    validate_definitions([CUST], list(views), [], list(services), str)


def test_docs_example_constructs():
    customer = Entity("customer", key="CUSTOMER_ID")
    tx = Source.parquet("data/transactions.parquet", timestamp="TX_DATETIME")
    spend = FeatureView(
        "spend",
        entity=customer,
        source=tx,
        aggregations=[
            Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d"),
            Aggregation("TX_AMOUNT", "mean", window="7d", name="avg_amount_7d"),
            Aggregation(
                "TX_AMOUNT", "sum", window="30d", where="TX_AMOUNT > 100", name="big_spend_30d"
            ),
        ],
    )
    svc = FeatureService("fraud_v1", [spend])
    assert svc.feature_names == ("nb_tx_1d", "avg_amount_7d", "big_spend_30d")
    assert len(svc.version) == 12


def test_unknown_column_names_view_and_existing_columns(src):
    view = FeatureView(
        "v", entity=CUST, source=src, aggregations=[Aggregation("amt", "sum", window="1d")]
    )
    with pytest.raises(
        DefinitionError, match=r"FeatureView 'v'.*'amt'.*Existing columns: cid, ts, amount"
    ):
        _validate(view)


def test_bad_window_is_refused():
    with pytest.raises(DefinitionError, match=r"Invalid window '7 days'.*'30d'"):
        Aggregation("amount", "sum", window="7 days")
    with pytest.raises(DefinitionError, match="longer than 0"):
        Aggregation("amount", "sum", window="0d")


def test_unknown_function_lists_allowed():
    with pytest.raises(DefinitionError, match=r"'median' is not one of count, sum, mean"):
        Aggregation("amount", "median", window="1d")


def test_duplicate_names_in_view_and_service(src):
    with pytest.raises(DefinitionError, match=r"duplicate feature names \['x'\]"):
        FeatureView(
            "v",
            entity=CUST,
            source=src,
            aggregations=[
                Aggregation("amount", "sum", window="1d", name="x"),
                Aggregation("amount", "mean", window="1d", name="x"),
            ],
        )
    a = FeatureView(
        "a",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("amount", "sum", window="1d", name="x")],
    )
    b = FeatureView(
        "b",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("amount", "max", window="1d", name="x")],
    )
    with pytest.raises(DefinitionError, match=r"\['x'\] appear in more than one view"):
        FeatureService("s", [a, b])


def test_aggregation_over_non_numeric_column(src):
    view = FeatureView(
        "v", entity=CUST, source=src, aggregations=[Aggregation("channel", "mean", window="1d")]
    )
    with pytest.raises(
        DefinitionError, match=r"applies 'mean' to 'channel' of type (large_)?string.*not numeric"
    ):
        _validate(view)
    ok = FeatureView(
        "v",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("channel", "count_distinct", window="1d")],
    )
    _validate(ok)


def test_where_type_mismatch(src):
    view = FeatureView(
        "v",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("amount", "sum", window="1d", where="channel > 100")],
    )
    with pytest.raises(DefinitionError, match="type mismatch.*compares a string with a number"):
        _validate(view)


def test_where_must_be_a_condition(src):
    view = FeatureView(
        "v",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("amount", "sum", window="1d", where="amount + 1")],
    )
    with pytest.raises(DefinitionError, match="is not a condition"):
        _validate(view)


@pytest.mark.parametrize(
    "text", ["amount > (SELECT 1)", "drop_table(amount)", "t.amount > 1", "amount LIKE 'x%'"]
)
def test_where_never_passes_sql_through(text):
    with pytest.raises(DefinitionError):
        expr.parse(text, where="test")


def test_post_outcome_column_raises_leakage(src):
    view = FeatureView(
        "v",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("recovery_fee", "sum", window="30d")],
    )
    with pytest.raises(LeakageError, match="recovery_fee.*post_outcome"):
        _validate(view, services=[FeatureService("s", [view])])
    row = FeatureView("r", entity=CUST, source=src, features=[Feature("recovery_fee")])
    with pytest.raises(LeakageError):
        _validate(row, services=[FeatureService("s2", [row])])


def test_derived_feature_reads_unknown_name(src):
    view = FeatureView(
        "v",
        entity=CUST,
        source=src,
        aggregations=[Aggregation("amount", "sum", window="1d", name="s1")],
    )
    d = DerivedView("d", [Derived("ratio", "s1 / income")])
    with pytest.raises(DefinitionError, match=r"column 'income'.*not available.*s1"):
        _validate(view, services=[FeatureService("s", [view, d])])
    ok = DerivedView("d", [Derived("ratio", "s1 / income")], request_fields={"income": "number"})
    _validate(view, services=[FeatureService("s", [view, ok])])


def test_missing_source_file_is_clear(tmp_path):
    view = FeatureView(
        "v",
        entity=CUST,
        source=Source.parquet(str(tmp_path / "nope.parquet"), timestamp="ts"),
        aggregations=[Aggregation("amount", "sum", window="1d")],
    )
    with pytest.raises(Exception, match="does not exist"):
        _validate(view)


@pytest.mark.parametrize(
    ("text", "row", "want"),
    [
        ("a / b", {"a": 1, "b": 0}, None),
        ("coalesce(a / b, 0)", {"a": 1, "b": 0}, 0),
        ("a > 1 AND b IS NULL", {"a": 2, "b": None}, True),
        ("a > 1 OR b > 1", {"a": None, "b": 2}, True),
        ("a > 1 AND b > 1", {"a": None, "b": 2}, None),
        ("NOT a IN (1, 2)", {"a": 3}, True),
        ("a NOT IN (1, 2)", {"a": None}, None),
        ("ln(a)", {"a": -1.0}, None),
        ("least(a, b)", {"a": 1, "b": None}, None),
    ],
)
def test_expression_python_semantics(text, row, want):
    assert expr.evaluate(expr.parse(text, where="t"), row) == want
