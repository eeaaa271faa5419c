"""Entra's reading of the OAuth 2.0 ``scope`` parameter (RFC 6749 §3.3) and v1's ``resource``.

A v2 scope names a resource and a permission on it: ``https://ml.azure.com/.default`` (every
permission the client has on ``https://ml.azure.com``), ``https://ml.azure.com/
user_impersonation`` (one permission), ``api://{appId}/.default``. A resource whose id ends in
``/`` is written with two slashes (``https://ml.azure.com//.default``); the access token's
``aud`` is the resource exactly as requested. ``openid``, ``profile``, ``email`` and
``offline_access`` are OpenID Connect extras that ask for an ID token and a refresh token.
The v1 endpoint takes ``resource={uri}`` instead. One request asks for one resource
(AADSTS28000) and ``.default`` does not combine with named permissions (AADSTS70011); both
are ``invalid_scope``.

Example::

    scope = parse_scope("https://ml.azure.com/.default offline_access openid profile", None)
    scope.resource          # 'https://ml.azure.com'
    scope.granted(user=True)
    # 'https://ml.azure.com/user_impersonation https://ml.azure.com/.default'
"""

from __future__ import annotations

from dataclasses import dataclass

from propylon.errors import OAuthError

__all__ = ["DEFAULT_SCOPE", "OIDC_SCOPES", "ScopeRequest", "parse_scope"]

DEFAULT_SCOPE = ".default"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
#: What ``.default`` grants a signed-in user on a resource (as Entra does for Azure's APIs).
USER_IMPERSONATION = "user_impersonation"


@dataclass(frozen=True)
class ScopeRequest:
    """A parsed ``scope`` (and ``resource``): one resource, its permissions, the OIDC extras."""

    resource: str | None
    permissions: tuple[str, ...]
    requested: tuple[str, ...]
    extras: frozenset[str]

    @property
    def is_default(self) -> bool:
        return self.permissions == (DEFAULT_SCOPE,)

    @property
    def openid(self) -> bool:
        return "openid" in self.extras

    @property
    def offline_access(self) -> bool:
        return "offline_access" in self.extras

    @property
    def text(self) -> str:
        """The scope as stored with a refresh token or device code (parses back to itself)."""
        return " ".join([*self.resource_scopes, *sorted(self.extras)])

    @property
    def resource_scopes(self) -> tuple[str, ...]:
        if self.requested:
            return self.requested
        if self.resource is None:
            return ()
        return tuple(_join(self.resource, p) for p in self.permissions)

    def delegated_permissions(self) -> tuple[str, ...]:
        """The ``scp`` of a user's access token."""
        if self.is_default or not self.permissions:
            return (USER_IMPERSONATION,)
        return self.permissions

    def granted(self, *, user: bool) -> str:
        """The ``scope`` of the token response: what MSAL files the token under.

        Every scope the client asked for is echoed, so MSAL's cache finds the token again by
        the scopes it asked with; a user's ``.default`` also names the permission it became.
        """
        scopes = list(self.resource_scopes)
        if user and self.is_default and self.resource is not None:
            scopes.insert(0, _join(self.resource, USER_IMPERSONATION))
        return " ".join(scopes)

    def with_resource_of(self, other: ScopeRequest) -> ScopeRequest:
        """This request, taking ``other``'s resource when it names none (a refresh asking only
        for ``openid offline_access``)."""
        if self.resource is not None:
            return self
        return ScopeRequest(
            other.resource, other.permissions, other.requested, self.extras | other.extras
        )


def _join(resource: str, permission: str) -> str:
    return f"{resource}/{permission}"


def _invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def parse_scope(scope: str | None, resource: str | None = None) -> ScopeRequest:
    """Parse ``scope`` (space-separated, RFC 6749 §3.3) and the v1 ``resource`` parameter."""
    extras: set[str] = set()
    requested: list[str] = []
    resources: set[str] = set()
    permissions: list[str] = []
    for item in (scope or "").split():
        if item.lower() in OIDC_SCOPES:
            extras.add(item.lower())
            continue
        target, slash, permission = item.rpartition("/")
        if not slash or not target or not permission:
            raise _invalid_scope(
                f"AADSTS70011: The scope '{item}' is not valid: name a resource, as in "
                "'https://ml.azure.com/.default'."
            )
        resources.add(target)
        if permission not in permissions:
            permissions.append(permission)
        if item not in requested:
            requested.append(item)
    if len(resources) > 1:
        raise _invalid_scope(
            "AADSTS28000: The scopes name more than one resource: "
            f"{', '.join(sorted(resources))}. Request one resource at a time."
        )
    if DEFAULT_SCOPE in permissions and len(permissions) > 1:
        raise _invalid_scope(
            "AADSTS70011: The '.default' scope cannot be combined with resource-specific scopes."
        )
    named = next(iter(resources), None)
    if resource:
        if named is not None and named.rstrip("/") != resource.rstrip("/"):
            raise OAuthError(
                "invalid_request",
                f"The resource '{resource}' differs from the resource of the scope '{named}'.",
            )
        if named is None:
            return ScopeRequest(resource, (DEFAULT_SCOPE,), (), frozenset(extras))
    return ScopeRequest(named, tuple(permissions), tuple(requested), frozenset(extras))
