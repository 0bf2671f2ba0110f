"""Write the benchmark's synthetic 12-column Parquet dataset (numpy + pyarrow, fixed seed).

    python gen_data.py OUT.parquet ROWS SEED [--reference]

`--reference` draws the drift reference: same columns, slightly different distributions, no
planted defects. The current dataset plants a few defects so that some checks fail: duplicate ids,
out-of-range ages, a region outside {a, b, c}, e-mails without '@'.
"""
from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def generate(rows: int, seed: int, reference: bool) -> pa.Table:
    """One dataset of `rows` rows; the reference has no defects and slightly shifted distributions."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    age = np.clip(np.rint(rng.normal(44, 12, rows)), 18, 100).astype(np.int32)
    income = rng.lognormal(np.log(45_000 if reference else 47_000), 0.6, rows)
    score = rng.beta(2.0 if reference else 2.1, 5.0, rows)
    region_p = [0.5, 0.3, 0.2, 0.0] if reference else [0.48, 0.31, 0.2, 0.01]
    region = np.array(["a", "b", "c", "d"])[rng.choice(4, rows, p=region_p)]
    domain = np.array(["example.com", "mail.net", "corp.org"])[rng.integers(0, 3, rows)]
    at_sign = np.full(rows, "@")
    tenure = rng.integers(0, 241, rows, dtype=np.int32)
    balance = rng.normal(1_000, 500, rows)
    signup = rng.integers(16_436, 20_089, rows).astype("datetime64[D]")  # 2015-01-01 .. 2024-12-31
    active = rng.random(rows) < 0.8
    country = np.array(["de", "fr", "es", "it", "nl", "pl", "se", "at", "be", "pt"])[rng.integers(0, 10, rows)]
    segment = np.array(["retail", "sme", "corporate"])[rng.choice(3, rows, p=[0.7, 0.25, 0.05])]
    income_null = rng.random(rows) < 0.02
    balance_null = rng.random(rows) < 0.01
    if not reference:
        dup = rng.choice(np.arange(1, rows), max(1, rows // 100_000), replace=False)
        ids[dup] = ids[dup - 1]
        bad_age = rng.choice(rows, max(1, rows // 10_000), replace=False)
        age[bad_age] = rng.choice(np.array([0, 17, 101, 150], dtype=np.int32), bad_age.size)
        at_sign[rng.random(rows) < 0.0005] = "_at_"
    email = pc.binary_join_element_wise("user", pc.cast(pa.array(ids), pa.string()), pa.array(at_sign),
                                        pa.array(domain), "")
    return pa.table({
        "id": ids, "age": age,
        "income": pa.array(income, mask=income_null), "score": score,
        "region": region, "email": email, "tenure_months": tenure,
        "balance": pa.array(balance, mask=balance_null), "signup_date": signup,
        "is_active": active, "country": country, "segment": segment,
    })


def main() -> None:
    """Parse the arguments and write the file."""
    out, rows, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    table = generate(rows, seed, "--reference" in sys.argv[4:])
    pq.write_table(table, out, compression="snappy")


if __name__ == "__main__":
    main()
