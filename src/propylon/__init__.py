"""Propylon: self-hosted managed online endpoints.

Packages follow the architecture: ``identity`` (OpenID Connect provider and token validation),
``authz`` (RBAC), ``control`` (ARM-shaped control plane), ``runtime`` (instances), ``inference``
(the server inside an instance), ``gateway`` (data plane), ``store`` (state), ``server`` (process
assembly), ``cli`` and ``client``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
