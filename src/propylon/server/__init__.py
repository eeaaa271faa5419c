"""``propylon server``: one process serving the control plane, identity provider and gateway."""

from propylon.server.app import build_context, create_control_app, create_gateway_app
from propylon.server.context import ServerContext
from propylon.server.run import serve

__all__ = ["ServerContext", "build_context", "create_control_app", "create_gateway_app", "serve"]
