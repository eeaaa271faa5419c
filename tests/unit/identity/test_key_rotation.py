"""Key rotation: publish before sign, keep after retire, forget after the retention window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from token_support import APP, ML, NOW, TENANT, Forge, split

from propylon.errors import ConfigurationError, ServiceUnavailable
from propylon.identity import (
    InvalidToken,
    IssuerUrl,
    KeyRing,
    KeyState,
    RejectReason,
    SigningKey,
    TokenIssuer,
    TokenValidator,
)

DAY = timedelta(days=1)


def kids(jwks: dict[str, list[dict[str, str]]]) -> set[str]:
    return {key["kid"] for key in jwks["keys"]}


def test_rotate_publishes_a_pending_key_that_does_not_sign_yet(
    keyring: KeyRing, active_key: SigningKey
) -> None:
    new = keyring.rotate(NOW)
    assert keyring.state(new, NOW) is KeyState.PENDING
    assert new.not_before_use == NOW + keyring.publish_delay
    assert kids(keyring.jwks(NOW)) == {active_key.kid, new.kid}
    assert keyring.signing_key(NOW).kid == active_key.kid


def test_pending_key_validates_already_so_early_adopters_are_not_refused(
    keyring: KeyRing, validator: TokenValidator, forge: Forge
) -> None:
    new = keyring.rotate(NOW)
    token = forge(header={"kid": new.kid}, key=new.private_key)
    assert validator.validate(token, audiences=(ML,), now=NOW).oid == APP.oid


def test_new_tokens_use_the_new_key_once_the_publish_delay_passed(
    keyring: KeyRing, issuer: TokenIssuer, active_key: SigningKey
) -> None:
    new = keyring.rotate(NOW)
    before = issuer.issue_access_token(TENANT, APP, ML, now=NOW + keyring.publish_delay - DAY / 24)
    after = issuer.issue_access_token(TENANT, APP, ML, now=NOW + keyring.publish_delay)
    assert split(before.token)[0]["kid"] == active_key.kid
    assert split(after.token)[0]["kid"] == new.kid
    assert split(after.token)[0]["x5t"] == new.x5t


def test_previous_key_tokens_validate_until_they_expire(
    keyring: KeyRing, issuer: TokenIssuer, validator: TokenValidator, active_key: SigningKey
) -> None:
    keyring.rotate(NOW)
    switch = NOW + keyring.publish_delay
    last_old = issuer.issue_access_token(TENANT, APP, ML, now=switch - timedelta(seconds=1))
    assert split(last_old.token)[0]["kid"] == active_key.kid
    retired = keyring.promote(switch)
    assert [k.kid for k in retired] == [active_key.kid]
    assert keyring.state(retired[0], switch) is KeyState.RETIRED
    assert active_key.kid in kids(keyring.jwks(switch))

    just_before_expiry = split(last_old.token)[1]["exp"] - 1
    moment = NOW.fromtimestamp(just_before_expiry, NOW.tzinfo)
    assert validator.validate(last_old.token, audiences=(ML,), now=moment).oid == APP.oid


def test_retired_key_leaves_the_jwks_and_its_tokens_fail_after_the_window(
    keyring: KeyRing, validator: TokenValidator, forge: Forge, active_key: SigningKey
) -> None:
    keyring.rotate(NOW)
    switch = NOW + keyring.publish_delay
    keyring.promote(switch)
    after_window = switch + keyring.retention
    # A token that would still be unexpired (it was forged with a long lifetime) must fail
    # because its key is gone, not because of its exp.
    iat = int(after_window.timestamp())
    long_lived = forge(claims={"iat": iat, "nbf": iat, "exp": iat + 3600})
    assert active_key.kid not in kids(keyring.jwks(after_window))
    with pytest.raises(InvalidToken) as caught:
        validator.validate(long_lived, audiences=(ML,), now=after_window)
    assert caught.value.reason is RejectReason.UNKNOWN_KID
    assert keyring.prune(after_window) == (active_key.kid,)
    assert active_key.kid not in {k.kid for k in keyring.all_keys()}


def test_retention_covers_the_longest_token_plus_the_largest_clock_skew(keyring: KeyRing) -> None:
    assert keyring.retention == timedelta(minutes=90) + timedelta(minutes=5)


def test_maintain_bootstraps_one_immediately_active_key() -> None:
    ring = KeyRing()
    changes = ring.maintain(NOW)
    assert len(changes.added) == 1
    assert ring.signing_key(NOW).kid == changes.added[0].kid
    assert not ring.maintain(NOW)


def test_maintain_rotates_when_due_then_promotes_and_prunes(keyring: KeyRing) -> None:
    old = keyring.signing_key(NOW)
    due = old.not_before_use + keyring.rotate_every - keyring.publish_delay
    assert not keyring.maintain(due - timedelta(seconds=1))
    rotated = keyring.maintain(due)
    assert len(rotated.added) == 1
    assert keyring.state(rotated.added[0], due) is KeyState.PENDING
    promoted = keyring.maintain(due + keyring.publish_delay)
    assert [k.kid for k in promoted.retired] == [old.kid]
    pruned = keyring.maintain(due + keyring.publish_delay + keyring.retention)
    assert pruned.removed == (old.kid,)


def test_replicas_with_the_same_keys_pick_the_same_signer_without_promote(
    private_keys: list[rsa.RSAPrivateKey],
) -> None:
    first = SigningKey.from_private_key(private_keys[1], created_at=NOW, not_before_use=NOW)
    second = SigningKey.from_private_key(
        private_keys[2], created_at=NOW + DAY, not_before_use=NOW + 2 * DAY
    )
    one, two = KeyRing([first, second]), KeyRing([second, first])
    for moment in (NOW, NOW + 2 * DAY):
        assert one.signing_key(moment).kid == two.signing_key(moment).kid
    assert one.signing_key(NOW + 2 * DAY).kid == second.kid


def test_revoked_key_tokens_fail_at_once(
    keyring: KeyRing, issuer: TokenIssuer, validator: TokenValidator, active_key: SigningKey
) -> None:
    token = issuer.issue_access_token(TENANT, APP, ML, now=NOW).token
    replacement = keyring.rotate(NOW, immediate=True)
    assert keyring.revoke(active_key.kid)
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, audiences=(ML,), now=NOW)
    assert caught.value.reason is RejectReason.UNKNOWN_KID
    assert keyring.signing_key(NOW).kid == replacement.kid


def test_signing_without_any_usable_key_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable):
        KeyRing().signing_key(NOW)


def test_issuer_refuses_lifetimes_longer_than_the_ring_keeps_retired_keys(
    keyring: KeyRing,
) -> None:
    with pytest.raises(ConfigurationError, match="max_token_lifetime"):
        TokenIssuer(
            keyring,
            IssuerUrl("https://idp.test"),
            lifetime=(timedelta(hours=1), timedelta(hours=2)),
        )
