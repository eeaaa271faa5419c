"""Scoring script of the sample regression model, in Azure ML's init()/run() contract.

The same file runs unmodified on Azure ML and on Propylon: the server sets AZUREML_MODEL_DIR to the
directory holding the deployment's model files, calls init() once, then run() with each request
body as text. Request: {"data": [[10 features], ...]}; response: one prediction per row.
"""

import json
import logging
import os

import joblib
import numpy

model = None


def init():
    """Load the model once, when the instance starts."""
    global model  # noqa: PLW0603 - the init()/run() contract shares state through globals
    # AZUREML_MODEL_DIR holds the registered model folder, here model/ (see blue-deployment.yml).
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    logging.info("Init complete")


def run(raw_data):
    """Predict for every row of the request's "data" matrix."""
    logging.info("model 1: request received")
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    logging.info("Request processed")
    return result.tolist()
