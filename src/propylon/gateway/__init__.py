"""The data plane: authenticate, authorize, route, limit, forward, mirror and log scoring requests.

* :mod:`~propylon.gateway.app` — the ASGI app and its per-request pipeline (start here);
* :mod:`~propylon.gateway.fastlane` — the same steps for plain requests, run from the HTTP
  protocol's callbacks (:mod:`propylon.server.gateway_protocol`) without the ASGI machinery;
* :mod:`~propylon.gateway.table` — the routing snapshot built from the store and the change feed;
* :mod:`~propylon.gateway.auth` — keys, aml_tokens, identity tokens + RBAC; 401 vs 403;
* :mod:`~propylon.gateway.routing` — traffic weights, deployment header, least outstanding;
* :mod:`~propylon.gateway.limits` — concurrency, queueing (429), body size (413), refusing
  instances set aside (503);
* :mod:`~propylon.gateway.upstream` — pooled keep-alive HTTP/1.1 to instances (408, 502);
* :mod:`~propylon.gateway.responses` — the answer relayed to the client (424) or an error body;
* :mod:`~propylon.gateway.mirror` — copies to the mirror deployment, answers dropped;
* :mod:`~propylon.gateway.traffic_log` — Azure's traffic-log records and the metrics.

Example::

    app = create_gateway(ctx, fallback=health_app)   # an ASGI app; uvicorn serves it
"""

from propylon.gateway.app import Gateway, GatewayOptions, create_gateway
from propylon.gateway.auth import SCORE_ACTION, Authenticator, Identity
from propylon.gateway.errors import BadGateway, ConnectFailed, MethodNotAllowed, RequestTimeout
from propylon.gateway.limits import DEFAULT_MAX_REQUEST_BYTES, Limiter
from propylon.gateway.mirror import Mirror
from propylon.gateway.routing import choose_deployment, least_outstanding, pick_weighted
from propylon.gateway.table import (
    AuthMode,
    Deployment,
    Endpoint,
    Instance,
    RequestLimits,
    RoutingTable,
    RoutingTables,
    TableLoader,
    endpoint_key_name,
)
from propylon.gateway.traffic_log import TrafficLog, TrafficRecord, read_traffic_log
from propylon.gateway.upstream import PooledTransport, Transport, UpstreamRequest, UpstreamResponse

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "SCORE_ACTION",
    "AuthMode",
    "Authenticator",
    "BadGateway",
    "ConnectFailed",
    "Deployment",
    "Endpoint",
    "Gateway",
    "GatewayOptions",
    "Identity",
    "Instance",
    "Limiter",
    "MethodNotAllowed",
    "Mirror",
    "PooledTransport",
    "RequestLimits",
    "RequestTimeout",
    "RoutingTable",
    "RoutingTables",
    "TableLoader",
    "TrafficLog",
    "TrafficRecord",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "choose_deployment",
    "create_gateway",
    "endpoint_key_name",
    "least_outstanding",
    "pick_weighted",
    "read_traffic_log",
]
