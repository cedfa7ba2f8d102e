"""Settings: defaults < TOML file < ISTHMUS_* environment < command-line flags, and the
documented example file."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from isthmus import cli
from isthmus.config import ConfigError, Peer, Settings, load

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "isthmus.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "isthmus.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    settings = load(env={})
    assert settings == Settings()
    assert (settings.host, settings.dicom_port, settings.http_port, settings.aet) == (
        "127.0.0.1",
        11112,
        8042,
        "ISTHMUS",
    )
    assert settings.duplicates == "keep"
    assert settings.resolved_index_url.startswith("sqlite:///")
    assert settings.resolved_index_url.endswith("isthmus-data/index.sqlite")


def test_toml_file_sets_values_in_any_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
aet = "TOPLEVEL"
[dicom]
dicom_port = 4242
peers = ["PACS@192.0.2.1:104", { aet = "CT", host = "192.0.2.2", port = 105 }]
[dicom.access]
store = "known"
[storage]
duplicates = "overwrite"
index_url = "postgresql://isthmus@db/isthmus"
[web]
http-port = 9000
""",
    )
    settings = load(path, env={})
    assert (settings.aet, settings.dicom_port, settings.http_port) == ("TOPLEVEL", 4242, 9000)
    assert settings.peers == (Peer("PACS", "192.0.2.1", 104), Peer("CT", "192.0.2.2", 105))
    assert settings.access == {"store": "known"}
    assert settings.duplicates == "overwrite"
    assert settings.resolved_index_url == "postgresql://isthmus@db/isthmus"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[dicom]\naet = "FROMFILE"\ndicom_port = 4242\n')
    env = {
        "ISTHMUS_AET": "FROMENV",
        "ISTHMUS_PEERS": "A@192.0.2.1:1,B@192.0.2.2:2",
        "ISTHMUS_ACCESS": "find=known,get=known",
        "ISTHMUS_ACCEPT_ANY_CALLED_AET": "true",
        "ISTHMUS_NETWORK_TIMEOUT": "2.5",
        "ISTHMUS_DATA": "/srv/isthmus",
    }
    settings = load(path, env=env)
    assert (settings.aet, settings.dicom_port) == ("FROMENV", 4242)
    assert [p.aet for p in settings.peers] == ["A", "B"]
    assert settings.access == {"find": "known", "get": "known"}
    assert settings.accept_any_called_aet is True
    assert settings.network_timeout == 2.5
    assert settings.data == Path("/srv/isthmus")


def test_config_file_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[dicom]\naet = "VIAENV"\n')
    assert load(env={"ISTHMUS_CONFIG": str(path)}).aet == "VIAENV"


def test_overrides_beat_environment_and_file_but_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[dicom]\naet = "FROMFILE"\ndicom_port = 4242\n')
    settings = load(
        path,
        env={"ISTHMUS_AET": "FROMENV", "ISTHMUS_DICOM_PORT": "4343"},
        aet="FROMFLAG",
        dicom_port=None,
    )
    assert (settings.aet, settings.dicom_port) == ("FROMFLAG", 4343)


def test_command_line_flags_have_the_last_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """
[dicom]
aet = "FROMFILE"
dicom_port = 4242
peers = ["PACS@192.0.2.1:104"]
""",
    )
    monkeypatch.setenv("ISTHMUS_AET", "FROMENV")
    monkeypatch.setenv("ISTHMUS_HTTP_PORT", "9999")
    args = cli._parser().parse_args(
        [
            "serve",
            "--config",
            str(path),
            "--aet",
            "FROMFLAG",
            "--dicom-port",
            "5000",
            "--peer",
            "PACS@192.0.2.9:11112",
            "--peer",
            "WS@127.0.0.1:4000",
            "--index-url",
            "sqlite:////tmp/x.sqlite",
            "--blob-url",
            "s3://bucket/prefix",
            "--data",
            str(tmp_path / "d"),
        ]
    )
    settings = cli._settings(args)
    assert (settings.aet, settings.dicom_port, settings.http_port) == ("FROMFLAG", 5000, 9999)
    assert settings.peers == (Peer("PACS", "192.0.2.9", 11112), Peer("WS", "127.0.0.1", 4000))
    assert settings.index_url == "sqlite:////tmp/x.sqlite"
    assert settings.resolved_blob_url == "s3://bucket/prefix"
    assert settings.data == tmp_path / "d"


@pytest.mark.parametrize(
    "text, env, message",
    [
        ('[dicom]\naet = "MUCH_TOO_LONG_AE_TITLE"\n', {}, "AE title"),
        ('[dicom]\naet = "A\\\\B"\n', {}, "AE title"),
        ('duplicates = "sometimes"\n', {}, "duplicates"),
        ('[dicom.access]\nstore = "everyone"\n', {}, "access.store"),
        ('[dicom.access]\nprint = "any"\n', {}, "access.print"),
        ("no_such_setting = 1\n", {}, "no_such_setting"),
        ('[dicom]\npeers = ["PACS@host"]\n', {}, "AET@HOST:PORT"),
        ('[dicom]\npeers = [{ aet = "X" }]\n', {}, "aet, host and port"),
        ('[dicom]\ndicom_port = "eleven"\n', {}, "dicom_port"),
        ("", {"ISTHMUS_DICOM_PORT": "eleven"}, "dicom_port"),
        ("", {"ISTHMUS_PEERS": "PACS@192.0.2.1:99999"}, "port out of range"),
        ("this is [not toml\n", {}, "cannot read config file"),
    ],
)
def test_invalid_settings_are_refused_with_the_setting_named(
    tmp_path: Path, text: str, env: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, text), env=env)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nowhere.toml", env={})


def test_peer_text_form() -> None:
    assert Peer.parse("PACS@192.0.2.1:104") == Peer("PACS", "192.0.2.1", 104)
    assert Peer.parse("V6@[::1]:11112") == Peer("V6", "::1", 11112)
    assert str(Peer("PACS", "192.0.2.1", 104)) == "PACS@192.0.2.1:104"
    for bad in ("PACS", "PACS@host", "@host:1", "PACS@host:0", "SEVENTEEN_CHARS_AE@h:1"):
        with pytest.raises(ConfigError):
            Peer.parse(bad)


# ------------------------------------------------------------------ the example file
def _example_keys() -> dict:
    doc = tomllib.loads(EXAMPLE.read_text())
    flat = dict(doc)
    for section in ("server", "dicom", "storage", "web"):
        flat.update(flat.pop(section, {}))
    flat.update({"p2p_" + k: v for k, v in flat.pop("p2p", {}).items()})  # the [p2p] table
    return flat


def test_example_file_loads() -> None:
    settings = load(EXAMPLE, env={})
    assert settings.peers and all(isinstance(p, Peer) for p in settings.peers)


def test_example_file_documents_every_setting() -> None:
    missing = [f.name for f in fields(Settings) if f.name not in _example_keys()]
    assert missing == [], f"examples/isthmus.toml lacks {missing}"


def test_example_file_shows_the_defaults() -> None:
    example, defaults = load(EXAMPLE, env={}), Settings()
    differing = [
        f.name
        for f in fields(Settings)
        if f.name != "peers" and getattr(example, f.name) != getattr(defaults, f.name)
    ]
    assert differing == [], f"examples/isthmus.toml and config.py disagree on {differing}"


@pytest.mark.parametrize(
    "name, value",
    [("durable", "maybe"), ("check_on_start", "2"), ("dicom_port", "70000"), ("http_port", "-1")],
)
def test_booleans_and_ports_are_checked_not_guessed(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(env={f"ISTHMUS_{name.upper()}": value})


def test_false_spelled_out_is_false() -> None:
    assert load(env={"ISTHMUS_DURABLE": "off"}).durable is False


def test_forwarding_rules_come_from_forward_tables_and_must_name_known_peers(
    tmp_path: Path,
) -> None:
    config = tmp_path / "isthmus.toml"
    config.write_text(
        'peers = ["PACS2@192.0.2.5:104"]\n'
        '[[forward]]\nname = "ct01"\nfrom = "CT01"\nto = "PACS2"\ndelete_after_days = 90\n'
        '[[forward]]\nmodality = "MR"\nmatch = { BodyPartExamined = "CHEST" }\nto = "PACS2"\n'
    )
    settings = load(config, env={})
    assert [r.get("name") for r in settings.forward] == ["ct01", None]
    config.write_text('[[forward]]\nfrom = "CT01"\nto = "PACS9"\n')
    with pytest.raises(ConfigError, match="'PACS9' is not a known peer"):
        load(config, env={})
