"""The benchmark suite as a pandera schema on pandas (reads the whole Parquet file, lazy validation).

    python pandera_suite.py BENCH.parquet

Built-in checks plus one-line lambdas for the column statistics (mean, median, stddev, missing
share), as pandera's docs suggest; no drift checks (pandera has none). Prints the failed checks.
"""
from __future__ import annotations

import sys

import pandas as pd
import pandera.pandas as pa

EMAIL = r"[a-z0-9._]+@[a-z0-9.]+"


def schema() -> pa.DataFrameSchema:
    """16 of the suite's 19 checks (all but the three drift checks)."""
    return pa.DataFrameSchema(
        {
            "id": pa.Column("int64", nullable=False, unique=True),
            "age": pa.Column("int32", [pa.Check.in_range(18, 100),
                                       pa.Check(lambda s: 30 <= s.mean() <= 60, name="mean")], nullable=False),
            "income": pa.Column("float64", [pa.Check(lambda s: 10_000 <= s.median() <= 100_000, name="median"),
                                            pa.Check(lambda s: 1 <= s.std() <= 1_000_000, name="stddev")],
                                nullable=True),
            "score": pa.Column("float64", nullable=True, checks=[pa.Check.in_range(0, 1),
                                           pa.Check(lambda s: 0.1 <= s.mean() <= 0.5, name="mean",
                                                    raise_warning=True)]),
            "region": pa.Column(checks=pa.Check.isin(["a", "b", "c"]), nullable=True),
            "email": pa.Column(checks=pa.Check.str_matches(EMAIL), nullable=False),
            "tenure_months": pa.Column("int32", pa.Check.in_range(0, 600), nullable=True),
        },
        checks=[
            pa.Check(lambda df: 1 <= len(df) <= 20_000_000, name="row_count"),
            pa.Check(lambda df: df["income"].isna().mean() <= 0.05, name="income_missing_ratio"),
            pa.Check(lambda df: df["balance"].isna().mean() <= 0.05, name="balance_missing_ratio",
                     raise_warning=True),
        ],
    )


def main() -> None:
    """Read the file, validate lazily, print one line per failed check."""
    df = pd.read_parquet(sys.argv[1])
    try:
        schema().validate(df, lazy=True)
        print("pandera: all checks passed")
    except pa.errors.SchemaErrors as err:
        failed = err.failure_cases.groupby(["column", "check"], dropna=False).size()
        for (column, check), cases in failed.items():
            print(f"pandera: FAILED {column} {check}: {cases} failure cases")


if __name__ == "__main__":
    main()
