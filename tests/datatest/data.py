"""A small deterministic dataset with known defects, written for DuckDB (CSV) and PostgreSQL alike."""
from __future__ import annotations

import datetime
import random
from pathlib import Path
from typing import Any

from tests.testing.postgres import PostgresServer, write_csv

COLUMNS = {"id": "bigint", "grp": "integer", "email": "text", "age": "integer", "income": "double precision",
           "score": "double precision", "region": "text", "created": "date", "flag": "boolean"}
SECRET_VALUE = "zz-private-value-7781"  # a row value that must never appear in any output


def rows(n: int, seed: int, shift: float = 0.0) -> list[list[Any]]:
    """n rows; every defect is planted at a known position."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append([
            i + 1 if i != 5 else 3,  # one duplicate id
            i % 7,
            f"user{i}@bank.example" if i % 50 else SECRET_VALUE,  # 2% do not match the email regex
            None if i % 40 == 0 else rnd.randint(18, 80),  # 2.5% missing
            round(rnd.lognormvariate(10.5 + shift, 0.4), 2),
            round(rnd.gauss(0.5 + shift, 0.15), 4),
            rnd.choice(["north", "south", "east"] + (["west"] if shift else [])),
            (datetime.date(2025, 1, 1) + datetime.timedelta(days=i % 300)).isoformat(),
            i % 3 == 0,
        ])
    return out


def write(path: Path, n: int = 2000, seed: int = 1, shift: float = 0.0) -> Path:
    """The dataset as CSV (empty field = NULL)."""
    return write_csv(path, list(COLUMNS), rows(n, seed, shift))


def load(server: PostgresServer, table: str, csv_path: Path) -> None:
    """The same CSV as a typed PostgreSQL table."""
    server.execute(f'DROP TABLE IF EXISTS "{table}"')
    server.load_csv(table, csv_path, COLUMNS)
