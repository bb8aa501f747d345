"""Deployment configuration: environment over TOML file over defaults, and clear refusals."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import webtest

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, mint_signed_token
from private_channels.config import Config, ConfigError, load_config, parse_size

KEY = secrets.token_urlsafe(48)


def test_defaults_without_environment_or_file() -> None:
    config = load_config({})
    assert config == Config()
    assert config.storage == "./private-channels-data"
    assert config.prefix == "/api/repo"
    assert config.max_upload_size == 1024**3
    assert config.log_format == "text"
    assert config.secret_key is None


def test_file_then_environment(tmp_path: Path) -> None:
    file = tmp_path / "pc.toml"
    file.write_text(
        f'storage = "memory://"\nsecret_key = "{KEY}"\nmax_upload_size = "500m"\n'
        'log_format = "json"\npublic_channels = ["docs", "open"]\nprefix = "/pkgs/"\n'
        "trusted_proxies = 1\ntoken_cache_ttl = 0.5\n"
    )
    config = load_config({"PRIVATE_CHANNELS_CONFIG": str(file)})
    assert config.storage == "memory://"
    assert config.secret_key == KEY
    assert config.max_upload_size == 500 * 1024**2
    assert config.log_format == "json"
    assert config.public_channels == ("docs", "open")
    assert config.prefix == "/pkgs"
    assert config.trusted_proxies == 1
    assert config.token_cache_ttl == 0.5
    env = {
        "PRIVATE_CHANNELS_CONFIG": str(file),
        "PRIVATE_CHANNELS_LOG_FORMAT": "text",
        "PRIVATE_CHANNELS_PUBLIC_CHANNELS": "a, b,a",
        "PRIVATE_CHANNELS_MAX_UPLOAD_SIZE": "2048",
        "PRIVATE_CHANNELS_PREFIX": "",  # empty means unset, as shells make it easy to do
    }
    config = load_config(env)
    assert config.log_format == "text"
    assert config.public_channels == ("a", "b")
    assert config.max_upload_size == 2048
    assert config.prefix == "/pkgs"


def test_settings_may_sit_in_a_table_of_a_shared_file(tmp_path: Path) -> None:
    file = tmp_path / "app.toml"
    file.write_text('[host]\nanything = 1\n\n[private-channels]\nstorage = "memory://"\n')
    assert load_config({}, path=file).storage == "memory://"


def test_explicit_path_wins_over_environment_variable(tmp_path: Path) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text('log_format = "json"\n')
    two.write_text('log_format = "off"\n')
    assert load_config({"PRIVATE_CHANNELS_CONFIG": str(one)}, path=two).log_format == "off"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("2048", 2048), ("500k", 500 * 1024), ("500m", 500 * 1024**2), ("2G", 2 * 1024**3),
     ("1gb", 1024**3), ("3 MiB", 3 * 1024**2), (4096, 4096)],
)  # fmt: skip
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "ten", "5x", "1.5g", 0])
def test_bad_sizes(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


# Each invalid setting: what the message must name, so the operator knows what to fix.
INVALID = [
    ({"PRIVATE_CHANNELS_LOG_FORMAT": "xml"}, "log_format (from PRIVATE_CHANNELS_LOG_FORMAT)"),
    ({"PRIVATE_CHANNELS_MAX_UPLOAD_SIZE": "lots"}, "max_upload_size"),
    ({"PRIVATE_CHANNELS_SECRET_KEY": "short"}, "secret_key (from PRIVATE_CHANNELS_SECRET_KEY)"),
    ({"PRIVATE_CHANNELS_PUBLIC_CHANNELS": "ok,-bad"}, "public_channels"),
    ({"PRIVATE_CHANNELS_PUBLIC_CHANNELS": "t"}, "reserved"),
    ({"PRIVATE_CHANNELS_PREFIX": "/api/../x y"}, "prefix"),
    ({"PRIVATE_CHANNELS_TRUSTED_PROXIES": "many"}, "trusted_proxies"),
    ({"PRIVATE_CHANNELS_TRUSTED_PROXIES": "-1"}, "trusted_proxies"),
    ({"PRIVATE_CHANNELS_TOKEN_CACHE_TTL": "forever"}, "token_cache_ttl"),
    ({"PRIVATE_CHANNELS_CONFIG": "/nonexistent/pc.toml"}, "does not exist"),
]


@pytest.mark.parametrize(("env", "named"), INVALID)
def test_invalid_environment_is_one_clear_sentence(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    message = str(info.value)
    assert named in message
    assert "\n" not in message
    assert message.endswith(".")
    assert message[0].isupper()


def test_secret_key_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"PRIVATE_CHANNELS_SECRET_KEY": "hunter2-secret"})
    assert "hunter2" not in str(info.value)
    assert "repr" not in str(info.value)
    assert "hunter2" not in repr(load_config({"PRIVATE_CHANNELS_SECRET_KEY": KEY + "hunter2"}))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('storage = "x"\nstorge = "y"\n', "unknown setting 'storge'"),
        ("log_format = 3\n", "log_format (from"),
        ("public_channels = 'a,b'\nmax_upload_size = true\n", "max_upload_size"),
        ("public_channels = [1, 2]\n", "public_channels"),
        ("storage = \n", "not valid TOML"),
        ('storage = ""\n', "storage"),
    ],
)
def test_invalid_file_is_one_clear_sentence(tmp_path: Path, text: str, named: str) -> None:
    file = tmp_path / "pc.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config({"PRIVATE_CHANNELS_CONFIG": str(file)})
    assert named in str(info.value)
    assert str(file) in str(info.value) or "storage" in named


def test_replace_validates_like_the_rest() -> None:
    config = load_config({}).replace(storage="memory://", prefix="x/", log_format=None)
    assert (config.storage, config.prefix, config.log_format) == ("memory://", "/x", "text")
    with pytest.raises(ConfigError, match="prefix"):
        config.replace(prefix="bad path")


def test_storage_that_cannot_open_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot be opened"):
        Config(storage="ftp://x").open_storage()
    with pytest.raises(ConfigError, match="cannot be opened"):
        Config(storage=str(tmp_path / "file" / "below")).open_storage()


def test_public_channels_are_created_public_and_readable_anonymously() -> None:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("docs", public=True)
    config = Config(public_channels=("docs", "open"), log_format="off")
    app = webtest.TestApp(config.build_app(storage))
    registry = ChannelRegistry(storage)
    assert [(c.name, c.public) for c in registry.list()] == [("docs", True), ("open", True)]
    # Anonymous read on a public channel passes authentication: whatever answers is not 401.
    assert app.get("/api/repo/open/simple/", expect_errors=True).status_int != 401
    # A second worker starting on the same storage changes nothing.
    config.prepare(storage)
    assert len(list(registry.list())) == 2


def test_public_channel_that_exists_private_stops_start_up() -> None:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    with pytest.raises(ConfigError, match="'team' is listed in public_channels but exists as a"):
        Config(public_channels=("team",)).build_app(storage)


def test_build_app_mounts_at_prefix_with_the_configured_secret_key() -> None:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    signed = mint_signed_token(KEY, channels=["team"], scope=Scope.READ)
    config = Config(secret_key=KEY, prefix="/deep/er", log_format="off")
    app = webtest.TestApp(config.build_app(storage))
    assert app.get("/deep/er/-/health").json["status"] == "ok"
    assert app.get("/api/repo/-/health", status=404).text.startswith("Channels are served under")
    app.get("/deep/er/team/simple/", status=401)
    # The signed token authenticates (so the answer is no longer 401) only with the key.
    authed = app.get("/deep/er/team/simple/", headers={"X-Auth": signed}, expect_errors=True)
    assert authed.status_int != 401
    other = webtest.TestApp(Config(prefix="/deep/er", log_format="off").build_app(storage))
    other.get("/deep/er/team/simple/", headers={"X-Auth": signed}, status=401)


def test_a_token_in_front_of_the_prefix_is_the_path_token() -> None:
    """rattler's and pixi's conda token: /t/<TOKEN>/<prefix>/<CHANNEL>/..."""
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.READ)
    app = webtest.TestApp(Config(prefix="/deep/er", log_format="off").build_app(storage))
    body = app.get(f"/t/{token}/deep/er/team/noarch/repodata.json").json
    assert body["info"] == {"subdir": "noarch"}
    app.get(f"/t/{'0' * 48}/deep/er/team/noarch/repodata.json", status=401)
    # Only in front of the prefix itself, never of a path that merely starts like it.
    app.get(f"/t/{token}/deep/erx/team/noarch/repodata.json", status=404)
    app.get(f"/t/{token}/other/team/noarch/repodata.json", status=404)


def test_build_app_json_log_and_trusted_proxy(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    secret, _ = TokenStore(storage).create(channels=["*"], scope=Scope.READ)
    app = webtest.TestApp(Config(log_format="json", trusted_proxies=1).build_app(storage))
    with caplog.at_level("INFO", logger="private_channels.access"):
        app.get(
            "/api/repo/-/health",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Auth": secret},
            extra_environ={"REMOTE_ADDR": "127.0.0.1"},
        )
    record = json.loads(caplog.records[-1].getMessage())
    assert record["remote_addr"] == "203.0.113.9"
    assert record["path"] == "/api/repo/-/health"


def test_config_error_from_the_cli_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "private_channels", "serve", "--port", "0"],
        env={"PRIVATE_CHANNELS_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "private-channels: error: The setting log_format (from PRIVATE_CHANNELS_LOG_FORMAT) is "
        "invalid: 'xml' is not one of text, json, off."
    ]


def test_serve_arguments_over_environment_over_file(tmp_path: Path) -> None:
    """``serve``: its options win over PRIVATE_CHANNELS_*, which win over the file."""
    file = tmp_path / "pc.toml"
    file.write_text(f'storage = "{tmp_path / "from-file"}"\nprefix = "/file"\nlog_format = "off"\n')

    def serving_line(*args: str, **env: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "private_channels", "serve", "--port", "0", *args],
            env={"PATH": "/usr/bin:/bin", **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=tmp_path,
        )
        try:
            assert process.stderr is not None
            return process.stderr.readline().strip()
        finally:
            process.terminate()
            process.wait(timeout=10)
            assert process.stderr is not None
            process.stderr.close()

    line = serving_line("--config", str(file))
    assert str(tmp_path / "from-file") in line and line.endswith("/file/")
    line = serving_line(PRIVATE_CHANNELS_CONFIG=str(file), PRIVATE_CHANNELS_PREFIX="/env")
    assert str(tmp_path / "from-file") in line and line.endswith("/env/")
    line = serving_line(
        "--prefix", "/arg", "--storage", str(tmp_path / "from-arg"),
        PRIVATE_CHANNELS_CONFIG=str(file), PRIVATE_CHANNELS_PREFIX="/env",
    )  # fmt: skip
    assert str(tmp_path / "from-arg") in line and line.endswith("/arg/")


@pytest.mark.parametrize(
    "config",
    [
        Config(),
        Config(storage="memory://", secret_key=KEY, max_upload_size=12345, prefix="",
               log_format="json", public_channels=("a", "b"), trusted_proxies=2,
               token_cache_ttl=0.25),
    ],
)  # fmt: skip
def test_environ_round_trips(config: Config) -> None:
    """What ``serve --workers`` hands to its gunicorn workers reads back the same."""
    assert load_config(config.environ()) == config
