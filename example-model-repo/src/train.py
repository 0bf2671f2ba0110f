"""Train the credit-default model.

Fits a scikit-learn HistGradientBoostingClassifier on data/prepared/train.csv
(categorical features handled natively, see features.py) and pickles it to
model/model.pkl with protocol 5. Params: everything under ``train:`` in
params.yaml. With a fixed ``train.seed`` the pickle is byte-for-byte
reproducible; early stopping is on ("auto": more than 10k rows), so without a
seed the internal validation split, and hence the model, changes per run.
Training runs on a single OpenMP thread so that the pickle does not depend on
the number of cores of the machine.
"""
from __future__ import annotations

import os
import pickle
import sys

import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from features import CATEGORICAL_MASK, load_dataset

TRAIN = os.path.join("data", "prepared", "train.csv")
MODEL = os.path.join("model", "model.pkl")


def main() -> int:
    with open("params.yaml", encoding="utf-8") as fh:
        params = yaml.safe_load(fh)["train"]

    X, y, _ = load_dataset(TRAIN)
    model = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"],
        max_iter=params["max_iter"],
        max_leaf_nodes=params["max_leaf_nodes"],
        min_samples_leaf=params["min_samples_leaf"],
        l2_regularization=params["l2_regularization"],
        categorical_features=CATEGORICAL_MASK,
        early_stopping="auto",
        random_state=params["seed"],
    )
    # One OpenMP thread: the fitted estimator records the thread count it ran
    # with (``_bin_mapper.n_threads``, capped at the machine's core count), so
    # pinning it keeps model.pkl byte-identical on machines of any size.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(X, y)

    os.makedirs(os.path.dirname(MODEL), exist_ok=True)
    with open(MODEL, "wb") as fh:
        pickle.dump(model, fh, protocol=5)
    print(f"wrote {MODEL}: {model.n_iter_} iterations on {len(y)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
