"""Scoring code that answers with a token of its endpoint's managed identity.

The request names the resource (``{"resource": "https://management.azure.com"}``); the token is
fetched exactly as ``ManagedIdentityCredential`` does in an App Service-style environment, from
``IDENTITY_ENDPOINT`` with the ``X-IDENTITY-HEADER`` secret. A test fixture only: a real model
never hands its identity's tokens to its callers.
"""

import json
import os
import ssl
import urllib.parse
import urllib.request


def init():
    pass


def run(raw_data):
    resource = json.loads(raw_data).get("resource", "https://ml.azure.com")
    query = urllib.parse.urlencode({"api-version": "2019-08-01", "resource": resource})
    request = urllib.request.Request(  # noqa: S310 — IDENTITY_ENDPOINT is the platform's https URL
        f"{os.environ['IDENTITY_ENDPOINT']}?{query}",
        headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]},
    )
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())
