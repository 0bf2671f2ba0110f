"""Split the raw applications into stratified train/test sets.

Reads data/raw/applications.csv and writes data/prepared/train.csv and
data/prepared/test.csv (same header, rows kept in their original order). The
split is by application: every application_id lands in exactly one file.
Params: ``prepare.test_size``, ``prepare.seed``.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import yaml
from sklearn.model_selection import train_test_split

RAW = os.path.join("data", "raw", "applications.csv")
OUT_DIR = os.path.join("data", "prepared")


def main() -> int:
    with open("params.yaml", encoding="utf-8") as fh:
        params = yaml.safe_load(fh)["prepare"]

    with open(RAW, encoding="utf-8", newline="") as fh:
        header, *lines = fh.read().splitlines(keepends=True)
    cols = header.rstrip("\n").split(",")
    id_col, y_col = cols.index("application_id"), cols.index("default")
    fields = [line.rstrip("\n").split(",") for line in lines]
    ids = np.array([int(f[id_col]) for f in fields], dtype=np.int64)
    y = np.array([int(f[y_col]) for f in fields], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise SystemExit("application_id is not unique in the raw data")

    train_idx, test_idx = train_test_split(
        np.arange(len(lines)),
        test_size=float(params["test_size"]),
        stratify=y,
        random_state=int(params["seed"]),
    )
    assert not set(ids[train_idx]) & set(ids[test_idx]), "application in both splits"

    os.makedirs(OUT_DIR, exist_ok=True)
    for name, idx in (("train", train_idx), ("test", test_idx)):
        path = os.path.join(OUT_DIR, f"{name}.csv")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(header)
            fh.writelines(lines[i] for i in np.sort(idx))
        print(f"wrote {path}: {len(idx)} rows, default rate {y[idx].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
