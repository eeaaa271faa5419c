"""Train the sample model: a ridge regression on scikit-learn's bundled diabetes data set.

Works offline (the data ships inside scikit-learn) and is deterministic: the same versions of
scikit-learn and NumPy give the same coefficients every run. Writes
``model/sklearn_regression_model.pkl``, the layout the scoring script expects under
``AZUREML_MODEL_DIR`` (as in Azure's ``cli/endpoints/online/model-1`` sample). Usage::

    python examples/model-1/train.py                   # writes examples/model-1/model/...
    python examples/model-1/train.py --out /tmp/m1     # writes /tmp/m1/model/...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

MODEL_FILE = Path("model") / "sklearn_regression_model.pkl"


def train() -> Ridge:
    features, target = load_diabetes(return_X_y=True)
    # Closed-form solver: no randomness, no iteration-count tolerance.
    return Ridge(alpha=0.1, solver="cholesky").fit(features, target)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory to hold model/sklearn_regression_model.pkl (default: beside this file)",
    )
    args = parser.parse_args(argv)
    path = args.out / MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(train(), path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
