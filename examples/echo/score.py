"""Echo model: answers with its input. For benchmarks and tests of everything around a model.

Behaviour switches (environment variables, e.g. ``environment_variables`` in a deployment YAML):

* ``ECHO_SLEEP_SECONDS``: sleep this long in every ``run()`` — a slow model;
* ``ECHO_INIT_SLEEP_SECONDS``: sleep this long in ``init()`` — a model that loads slowly;
* ``ECHO_FAIL=run``: ``run()`` raises ``RuntimeError("echo model asked to fail")``;
  ``ECHO_FAIL=init``: ``init()`` raises it, so the instance never becomes ready.

``run()`` returns the request body parsed as JSON (the same JSON comes back), or the body text
when it is not JSON. The model-inference routes are echoes too: ``chat_completions`` repeats the
last user message (streamed word by word when ``"stream": true``), ``embeddings`` returns a fixed
8-dimensional vector per input derived from its bytes, and ``info`` describes the model.
"""

import hashlib
import json
import os
import time

MODEL_NAME = "echo"
_settings = {}


def _fail_if(stage):
    if os.getenv("ECHO_FAIL", "").strip().lower() == stage:
        raise RuntimeError("echo model asked to fail")


def init():
    _settings["sleep"] = float(os.getenv("ECHO_SLEEP_SECONDS", "0") or 0)
    init_sleep = float(os.getenv("ECHO_INIT_SLEEP_SECONDS", "0") or 0)
    if init_sleep:
        time.sleep(init_sleep)
    _fail_if("init")


def run(raw_data):
    _fail_if("run")
    if _settings.get("sleep"):
        time.sleep(_settings["sleep"])
    try:
        return json.loads(raw_data)
    except ValueError:
        return raw_data


def _last_user_message(body):
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _usage(prompt, completion):
    prompt_tokens, completion_tokens = len(prompt.split()), len(completion.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completions(body):
    _fail_if("run")
    text = _last_user_message(body)
    completion_id = "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    created = int(time.time())
    if body.get("stream"):
        return _stream(completion_id, created, text)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_NAME,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
            }
        ],
        "usage": _usage(text, text),
    }


def _stream(completion_id, created, text):
    def update(delta, finish_reason=None):
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    yield update({"role": "assistant", "content": ""})
    words = text.split(" ")
    for index, word in enumerate(words):
        if _settings.get("sleep"):
            time.sleep(_settings["sleep"])
        yield update({"content": word if index == 0 else " " + word})
    final = update({}, "stop")
    final["usage"] = _usage(text, text)
    yield final


def _vector(text):
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 6) for byte in digest[:8]]


def embeddings(body):
    _fail_if("run")
    inputs = body.get("input") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    tokens = sum(len(str(item).split()) for item in inputs)
    return {
        "id": "embd-" + hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:12],
        "object": "list",
        "model": MODEL_NAME,
        "data": [
            {"object": "embedding", "index": i, "embedding": _vector(str(item))}
            for i, item in enumerate(inputs)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def info():
    return {
        "model_name": MODEL_NAME,
        "model_type": "chat_completion",
        "model_provider_name": "Propylon",
    }
