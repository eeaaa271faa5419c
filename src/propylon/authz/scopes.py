"""Azure resource-id scopes: parsing, a canonical key, and the ancestor chain.

A scope is where a role or deny assignment applies, written as an Azure resource ID
(reference §1.6, ``scope-overview.md``)::

    /                                                         root (built-in assignableScopes)
    /providers/Microsoft.Management/managementGroups/{mg}     management group
    /subscriptions/{sub}                                      subscription
    /subscriptions/{sub}/resourceGroups/{rg}                  resource group
    …/providers/Microsoft.MachineLearningServices/workspaces/{ws}[/onlineEndpoints/{e}[/deployments/{d}]]
    {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}    extension resource

Rules implemented here:

* names are case-insensitive ("Always perform a case-insensitive comparison of names",
  ``resource-name-rules``), so every comparison goes through :func:`canonical`: lower case,
  trailing slash stripped;
* ancestry is decided on whole ``type/name`` steps, never on string prefixes, so ``rg1`` is not a
  parent of ``rg10`` (reference §1.6, derived rule; §6.2 vector 12);
* an assignment at a scope applies to the scope and every descendant, so a decision walks
  :func:`ancestors` of the requested scope, which is cached because it runs on every request.

Management-group membership of subscriptions is not visible in the resource ID; a management
group's parent here is the root, and the tenant hierarchy is the directory's business.

Example::

    >>> ancestors("/subscriptions/S/resourceGroups/RG/providers/Microsoft.Web/sites/W")
    ('/subscriptions/s/resourcegroups/rg/providers/microsoft.web/sites/w',
     '/subscriptions/s/resourcegroups/rg', '/subscriptions/s', '/')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from propylon.errors import BadRequest

__all__ = [
    "ROOT",
    "Scope",
    "ScopeLevel",
    "ancestors",
    "canonical",
    "extension_scope",
    "is_within",
    "normalize",
    "parent",
    "parse_scope",
]

ROOT = "/"

# Longer than any real ARM id; a bound keeps the per-request caches from holding huge keys.
_MAX_SCOPE_LENGTH = 2048
# '*' because assignableScopes may not hold wildcards (custom-roles.md); '?' and '#' because a
# scope is a URL path; '\', whitespace and (below) non-printable characters never belong in an id.
_FORBIDDEN = re.compile(r"[*?#\\\s]")
_KEYWORD_CASING = {
    "subscriptions": "subscriptions",
    "resourcegroups": "resourceGroups",
    "providers": "providers",
}


class ScopeLevel(StrEnum):
    """How far down the ARM hierarchy a scope sits."""

    ROOT = "root"
    MANAGEMENT_GROUP = "managementGroup"
    SUBSCRIPTION = "subscription"
    RESOURCE_GROUP = "resourceGroup"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class Scope:
    """A parsed scope.

    ``id`` keeps the caller's casing of names but spells the ARM keywords (``subscriptions``,
    ``resourceGroups``, ``providers``) canonically; ``key`` is the lowercase comparison key.
    ``chain`` holds the keys of the scope and every ancestor, nearest first, ending with ``/``.
    """

    id: str
    key: str
    level: ScopeLevel
    subscription_id: str | None
    resource_group: str | None
    provider: str | None
    resource_types: tuple[str, ...]
    resource_names: tuple[str, ...]
    chain: tuple[str, ...]

    @property
    def resource_type(self) -> str | None:
        """``Namespace/type/childType`` of the innermost resource, e.g.
        ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``."""
        if self.provider is None:
            return None
        return "/".join((self.provider, *self.resource_types))

    @property
    def name(self) -> str | None:
        """The innermost name: the resource, resource group, subscription or management group."""
        if self.resource_names:
            return self.resource_names[-1]
        return self.resource_group or self.subscription_id


def _invalid(value: str, why: str, target: str) -> BadRequest:
    shown = value if len(value) <= 200 else value[:200] + "…"
    return BadRequest(
        f"The scope '{shown}' is not valid: {why}.", code="InvalidScope", target=target
    )


def _split(value: str, target: str) -> list[str]:
    if not isinstance(value, str) or not value:
        raise _invalid(str(value), "a scope must be a non-empty string", target)
    if len(value) > _MAX_SCOPE_LENGTH:
        raise _invalid(value, f"a scope is at most {_MAX_SCOPE_LENGTH} characters", target)
    if not value.startswith("/"):
        raise _invalid(value, "a scope starts with '/'", target)
    forbidden = _FORBIDDEN.search(value)
    if forbidden is not None or not value.isprintable():
        ch = forbidden.group() if forbidden else next(c for c in value if not c.isprintable())
        raise _invalid(value, f"character {ch!r} is not allowed", target)
    if value == ROOT:
        return []
    body = value[1:]
    if body.endswith("/"):
        body = body[:-1]
    segments = body.split("/")
    for segment in segments:
        if not segment:
            raise _invalid(value, "empty path segment ('//')", target)
        if segment in {".", ".."}:
            raise _invalid(value, f"path segment '{segment}' is not allowed", target)
    return segments


def _parse(value: str, target: str) -> Scope:
    """Walk the grammar ``[subscriptions/{s}[/resourceGroups/{rg}]] (providers/{ns}(/{t}/{n})+)*``.

    ``boundaries`` records after how many segments a complete scope ends; those prefixes are the
    ancestors. Extension resources (``…/providers/Microsoft.Authorization/roleAssignments/{g}``)
    are provider blocks like any other, so their parent is the scope they extend.
    """
    segments = _split(value, target)
    lowered = [s.lower() for s in segments]
    boundaries: list[int] = []
    subscription_id: str | None = None
    resource_group: str | None = None
    provider: str | None = None
    types: list[str] = []
    names: list[str] = []
    level = ScopeLevel.ROOT
    keywords: set[int] = set()
    i = 0
    n = len(segments)
    if n and lowered[0] == "subscriptions":
        if n < 2:
            raise _invalid(value, "'subscriptions' must be followed by a subscription id", target)
        subscription_id = segments[1]
        level = ScopeLevel.SUBSCRIPTION
        keywords.add(0)
        i = 2
        boundaries.append(i)
        if i < n and lowered[i] == "resourcegroups":
            keywords.add(i)
            if i + 1 >= n:
                raise _invalid(value, "'resourceGroups' must be followed by a name", target)
            resource_group = segments[i + 1]
            level = ScopeLevel.RESOURCE_GROUP
            i += 2
            boundaries.append(i)
    while i < n:
        if lowered[i] != "providers":
            raise _invalid(value, f"expected 'providers' but found '{segments[i]}'", target)
        keywords.add(i)
        i, block_provider, block_types, block_names = _provider_block(
            value, segments, lowered, i, boundaries, target
        )
        provider, types, names = block_provider, block_types, block_names
        if (
            subscription_id is None
            and len(boundaries) == 1
            and block_provider.lower() == "microsoft.management"
            and block_types[0].lower() == "managementgroups"
            and len(block_types) == 1
        ):
            level = ScopeLevel.MANAGEMENT_GROUP
        else:
            level = ScopeLevel.RESOURCE
    canonical_segments = [
        _KEYWORD_CASING[low] if idx in keywords else seg
        for idx, (seg, low) in enumerate(zip(segments, lowered, strict=True))
    ]
    key_body = "/".join(lowered)
    chain = tuple(["/" + "/".join(lowered[:b]) for b in reversed(boundaries)] + [ROOT])
    return Scope(
        id="/" + "/".join(canonical_segments),
        key="/" + key_body,
        level=level,
        subscription_id=subscription_id,
        resource_group=resource_group,
        provider=provider,
        resource_types=tuple(types),
        resource_names=tuple(names),
        chain=chain,
    )


def _provider_block(
    value: str,
    segments: list[str],
    lowered: list[str],
    start: int,
    boundaries: list[int],
    target: str,
) -> tuple[int, str, list[str], list[str]]:
    """Read ``providers/{namespace}/{type}/{name}[/{childType}/{childName}…]`` from ``start``;
    every ``type/name`` step closes a scope. Return where the block ends and what it names."""
    n = len(segments)
    if start + 3 >= n:
        raise _invalid(
            value, "'providers' must be followed by a namespace, a type and a name", target
        )
    provider = segments[start + 1]
    types: list[str] = []
    names: list[str] = []
    i = start + 2
    while i < n and lowered[i] != "providers":
        if i + 1 >= n:
            raise _invalid(value, f"resource type '{segments[i]}' has no name", target)
        types.append(segments[i])
        names.append(segments[i + 1])
        i += 2
        boundaries.append(i)
    if not types:
        raise _invalid(value, f"provider '{provider}' has no resource type", target)
    return i, provider, types, names


@lru_cache(maxsize=65536)
def _parse_cached(value: str) -> Scope:
    return _parse(value, "scope")


def parse_scope(value: str, *, target: str = "scope") -> Scope:
    """Parse and validate a scope; raise :class:`BadRequest` (``InvalidScope``) naming ``target``.

    >>> parse_scope("/subscriptions/s/resourcegroups/rg/").id
    '/subscriptions/s/resourceGroups/rg'
    """
    if target == "scope":
        return _parse_cached(value)
    return _parse(value, target)


def canonical(scope: str) -> str:
    """The case-insensitive comparison key: lower case, no trailing slash (``/`` stays ``/``)."""
    return _parse_cached(scope).key


def normalize(scope: str) -> str:
    """The display form: trailing slash stripped, ARM keywords spelled canonically."""
    return _parse_cached(scope).id


def ancestors(scope: str) -> tuple[str, ...]:
    """Canonical keys of ``scope`` and every parent up to ``/``, nearest first.

    Cached: the gateway and control plane call this once per decision.
    """
    return _parse_cached(scope).chain


def parent(scope: str) -> str | None:
    """The canonical key of the nearest enclosing scope, or ``None`` for ``/``."""
    chain = ancestors(scope)
    return chain[1] if len(chain) > 1 else None


def is_within(scope: str, container: str) -> bool:
    """Whether ``scope`` is ``container`` or a descendant of it (case-insensitive, whole steps).

    >>> is_within("/subscriptions/s/resourceGroups/rg10", "/subscriptions/s/resourceGroups/rg1")
    False
    """
    return canonical(container) in ancestors(scope)


def extension_scope(resource_id: str, *, target: str = "id") -> tuple[str, str]:
    """Split an extension-resource id into ``(scope, name)``.

    A role assignment's id is ``{scope}/providers/Microsoft.Authorization/roleAssignments/{name}``
    and "the scope can be derived from that ID" (reference §1.6); role definitions follow the same
    shape. The returned scope is in display form.

    >>> extension_scope("/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/g")
    ('/subscriptions/s', 'g')
    """
    parsed = parse_scope(resource_id, target=target)
    segments = parsed.id.split("/")
    if len(segments) < 5 or segments[-4].lower() != "providers":
        raise _invalid(resource_id, "not an extension resource id", target)
    scope = "/".join(segments[:-4]) or ROOT
    return scope, segments[-1]
