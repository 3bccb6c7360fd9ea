"""Key settings that would break or leak later are refused when the settings load."""

from __future__ import annotations

import pytest

from core.settings import LONGEST_SIGNED_TOKEN_SECONDS, ConfigError, load_settings

MASTER = "44" * 32
OLD = "55" * 32


def _load(**env: str):
    return load_settings({"IDP_VAR_DIR": "/tmp/idp-key-settings-var", "IDP_MASTER_KEY": MASTER,
                          **{f"IDP_{k.upper()}": v for k, v in env.items()}})


def test_old_master_key_with_the_current_key_id_is_refused() -> None:
    """A master-key change with IDP_MASTER_KEY_ID left at "k1": the old key "k1:<old>"
    was dropped, every sm4gcm.k1.* value then opened with the new key and failed, and
    ``idp keys reencrypt`` selected nothing (every row already had the current prefix)."""
    with pytest.raises(ConfigError):
        _load(master_key_id="k1", old_master_keys=f"k1:{OLD}")


def test_master_key_id_is_checked_at_load() -> None:
    """An id FieldCipher refuses ([A-Za-z0-9_-]{1,64}) failed only at the first seal or
    open, in a request."""
    with pytest.raises(ConfigError):
        _load(old_master_keys=f"k.0:{OLD}")
    with pytest.raises(ConfigError):
        _load(master_key_id="k.2")


@pytest.mark.parametrize(("name", "value"), [
    ("key_retire_seconds", "0"),       # tokens of the previous key die at rotation
    ("key_retire_seconds", "600"),     # < ACCESS_TOKEN_SECONDS / ID_TOKEN_SECONDS (3600)
    ("key_publish_seconds", "-86400"),  # a "rotated" key signs before anyone can know it
])
def test_key_life_cycle_settings_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        _load(**{name: value})


def test_settings_repr_hides_key_material() -> None:
    settings = _load(old_master_keys=f"k0:{OLD}", sms_gateway="http",
                     sms_webhook_url="https://relay.example/sms",
                     sms_webhook_token="webhook-bearer-secret")
    text = repr(settings) + str(settings)
    leaked = [name for name, secret in (("IDP_MASTER_KEY", MASTER),
                                        ("IDP_OLD_MASTER_KEYS", OLD),
                                        ("IDP_SMS_WEBHOOK_TOKEN", "webhook-bearer-secret"))
              if secret in text]
    assert not leaked, f"repr(Settings) shows {leaked} in clear"


def test_the_retire_bound_covers_every_token_the_service_signs() -> None:
    from idp.oidc import tokens

    assert max(tokens.ACCESS_TOKEN_SECONDS, tokens.ID_TOKEN_SECONDS) <= \
        LONGEST_SIGNED_TOKEN_SECONDS
    assert _load(key_retire_seconds=str(LONGEST_SIGNED_TOKEN_SECONDS)).key_retire_seconds \
        == LONGEST_SIGNED_TOKEN_SECONDS


def test_settings_repr_hides_the_credentials_in_urls() -> None:
    settings = _load(database_url="postgresql://idp:db-password-secret@db.example:5432/idp",
                     redis_url="redis://:redis-password-secret@cache.example:6379/0",
                     sms_gateway="http",
                     sms_webhook_url="https://relay.example/sms?key=relay-key-secret")
    text = repr(settings)
    assert not [s for s in ("db-password-secret", "redis-password-secret", "relay-key-secret")
                if s in text]
