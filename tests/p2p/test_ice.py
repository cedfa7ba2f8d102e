"""ICE server settings (the `[p2p]` table), TURN REST API credentials as coturn checks
them, and the wrong-proof token buckets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from isthmus.config import ConfigError, load
from isthmus.p2p.ice import ice_config, turn_rest_credentials
from isthmus.p2p.limits import OfferLimiter


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "isthmus.toml"
    path.write_text(text)
    return path


def test_the_p2p_table_gives_ice_servers_static_credentials_and_relay_only(
    tmp_path: Path,
) -> None:
    path = config(
        tmp_path,
        '[p2p]\nice_servers = ["stun:stun.example.org:3478", "turn:t.example.org:3478?transport=udp"]\n'
        'turn_username = "alice"\nturn_credential = "s3cret"\nrelay_only = true\n',
    )
    ice = ice_config(load(path, env={}))
    assert ice.relay_only is True
    assert ice.as_json()["ice_servers"] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {
            "urls": ["turn:t.example.org:3478?transport=udp"],
            "username": "alice",
            "credential": "s3cret",
        },
    ]


def test_the_environment_gives_ice_servers_as_a_comma_separated_list() -> None:
    env = {
        "ISTHMUS_P2P_ICE_SERVERS": "stun:a:3478,turn:b:3478",
        "ISTHMUS_P2P_TURN_SECRET": "shared",
        "ISTHMUS_P2P_RELAY_ONLY": "yes",
    }
    settings = load(None, env=env)
    assert settings.p2p_ice_servers == ("stun:a:3478", "turn:b:3478")
    assert settings.p2p_relay_only


def test_a_turn_secret_mints_a_time_limited_credential_the_coturn_way() -> None:
    username, credential = turn_rest_credentials("shared", ttl=600, name="isthmus")
    expiry, name = username.split(":")
    assert name == "isthmus" and 590 <= int(expiry) - time.time() <= 600
    expected = hmac.new(b"shared", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected
    settings = load(
        None, env={"ISTHMUS_P2P_ICE_SERVERS": "turn:b:3478", "ISTHMUS_P2P_TURN_SECRET": "shared"}
    )
    turn = ice_config(settings).servers[0]
    assert turn.username.endswith(":isthmus") and turn.credential


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ISTHMUS_P2P_ICE_SERVERS": "http://x"}, "not a stun:"),
        ({"ISTHMUS_P2P_ICE_SERVERS": "turn:u:p@host:3478"}, "embeds credentials"),
        ({"ISTHMUS_P2P_ICE_SERVERS": "turn:host:3478"}, "needs turn_username"),
        ({"ISTHMUS_P2P_RELAY_ONLY": "true"}, "relay_only needs a turn: server"),
        (
            {
                "ISTHMUS_P2P_ICE_SERVERS": "turn:h:1",
                "ISTHMUS_P2P_TURN_SECRET": "s",
                "ISTHMUS_P2P_TURN_USERNAME": "u",
            },
            "not both",
        ),
    ],
)
def test_unusable_ice_settings_are_refused_naming_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(None, env=env)


def test_an_unknown_key_in_the_p2p_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="p2p_stun"):
        load(config(tmp_path, '[p2p]\nstun = "stun:x"\n'), env={})


def test_wrong_proofs_empty_the_link_and_address_buckets_which_refill_with_time() -> None:
    now = [0.0]
    limiter = OfferLimiter(capacity=3, refill=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("L1", "10.0.0.1") == 0
        limiter.failed("L1", "10.0.0.1")
    assert limiter.retry_after("L1", "10.0.0.1") == 10
    assert limiter.retry_after("L1", "10.0.0.2") == 10  # the link is held up…
    assert limiter.retry_after("L2", "10.0.0.1") == 10  # …and so is the address
    assert limiter.retry_after("L2", "10.0.0.2") == 0  # others are not
    now[0] = 4.0
    assert limiter.retry_after("L1", "10.0.0.2") == 6
    now[0] = 10.0
    assert limiter.retry_after("L1", "10.0.0.1") == 0


def test_serve_flags_give_ice_servers_and_relay_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from isthmus.cli import _parser, _settings

    for name in ("ISTHMUS_P2P_ICE_SERVERS", "ISTHMUS_P2P_RELAY_ONLY", "ISTHMUS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ISTHMUS_P2P_TURN_SECRET", "shared")
    args = _parser().parse_args(
        ["serve", "--ice-server", "stun:a:3478", "--ice-server", "turn:b:3478", "--relay-only"]
    )
    settings = _settings(args)
    assert settings.p2p_ice_servers == ("stun:a:3478", "turn:b:3478")
    assert settings.p2p_relay_only
