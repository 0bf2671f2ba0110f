"""The benchmark suite as a Great Expectations 1.x suite on pandas (the quick-start `read_parquet` batch).

    python gx_suite.py BENCH.parquet PROFILE.json

All 19 checks; drift as GX's only distribution expectation, KL divergence, against the reference's
decile bins and category shares in PROFILE.json (the baseline's profile, made once beforehand).
Prints one line per failed expectation.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe

WARNING = "warning"


def _partition(prof: dict[str, Any]) -> dict[str, Any]:
    """A GX partition object: decile bins with open-ended tails, or category weights."""
    if "edges" in prof:
        shares = prof["shares"]
        return {"bins": prof["edges"], "weights": shares[1:-1], "tail_weights": [shares[0], shares[-1]]}
    return {"values": prof["categories"], "weights": prof["shares"][:-1]}


def expectations(prof: dict[str, Any]) -> list[gxe.Expectation]:
    """The suite's 19 checks as expectations."""
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=20_000_000),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToNotBeNull(column="age"),
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=100),
        gxe.ExpectColumnMeanToBeBetween(column="age", min_value=30, max_value=60),
        gxe.ExpectColumnValuesToNotBeNull(column="income", mostly=0.95),
        gxe.ExpectColumnMedianToBeBetween(column="income", min_value=10_000, max_value=100_000),
        gxe.ExpectColumnStdevToBeBetween(column="income", min_value=1, max_value=1_000_000),
        gxe.ExpectColumnKLDivergenceToBeLessThan(column="income", partition_object=_partition(prof["income"]),
                                                 threshold=0.25),
        gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1),
        gxe.ExpectColumnMeanToBeBetween(column="score", min_value=0.1, max_value=0.5, severity=WARNING),
        gxe.ExpectColumnKLDivergenceToBeLessThan(column="score", partition_object=_partition(prof["score"]),
                                                 threshold=0.2),
        gxe.ExpectColumnValuesToBeInSet(column="region", value_set=["a", "b", "c"]),
        gxe.ExpectColumnKLDivergenceToBeLessThan(column="region", partition_object=_partition(prof["region"]),
                                                 threshold=0.25, tail_weight_holdout=1e-4),
        gxe.ExpectColumnValuesToNotBeNull(column="email"),
        gxe.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[a-z0-9._]+@[a-z0-9.]+$"),
        gxe.ExpectColumnValuesToBeBetween(column="tenure_months", min_value=0, max_value=600),
        gxe.ExpectColumnValuesToNotBeNull(column="balance", mostly=0.95, severity=WARNING),
    ]


def main() -> None:
    """Validate the file against the suite and print the failures."""
    prof = json.loads(Path(sys.argv[2]).read_text())
    context = gx.get_context(mode="ephemeral")
    suite = gx.ExpectationSuite(name="bench", expectations=expectations(prof))
    batch = context.data_sources.pandas_default.read_parquet(sys.argv[1])
    result = batch.validate(suite)
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            seen = r.result.get("observed_value", r.result.get("unexpected_count"))
            print(f"gx: FAILED {cfg.type} {cfg.kwargs.get('column', '')}: {seen}")
    stats = result.statistics
    print(f"gx: {stats['successful_expectations']}/{stats['evaluated_expectations']} expectations met")


if __name__ == "__main__":
    main()
