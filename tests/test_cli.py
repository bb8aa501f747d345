"""The command line, run as a user runs it: a subprocess with its exit code and output."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .support import cli, live_server


def test_channel_create_list_delete(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "beta", storage=data)
    cli("channel", "create", "alpha", "--public", storage=data)
    assert cli("channel", "list", storage=data).stdout.splitlines() == [
        "alpha\tpublic",
        "beta\tprivate",
    ]
    # Without --yes and without a terminal it refuses, naming what would be removed.
    refused = cli("channel", "delete", "beta", storage=data, check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        "private-channels: error: Channel 'beta' holds no packages. Deleting removes it "
        "for good; run again with --yes to delete it\n"
    )
    cli("channel", "delete", "beta", "--yes", storage=data)
    assert cli("channel", "list", storage=data).stdout.splitlines() == ["alpha\tpublic"]


def test_channel_may_allow_reupload(tmp_path: Path) -> None:
    from private_channels.channels import ChannelRegistry
    from private_channels.storage import FileSystemStorage

    cli("channel", "create", "strict", storage=tmp_path)
    cli("channel", "create", "loose", "--allow-reupload", storage=tmp_path)
    registry = ChannelRegistry(FileSystemStorage(tmp_path))
    assert registry.get("loose").allow_reupload  # type: ignore[union-attr]
    assert not registry.get("strict").allow_reupload  # type: ignore[union-attr]


def test_storage_flag_beats_environment(tmp_path: Path) -> None:
    cli("channel", "create", "x", "--storage", str(tmp_path / "flag"), storage=tmp_path / "env")
    assert cli("channel", "list", storage=tmp_path / "flag").stdout.strip() == "x\tprivate"
    assert cli("channel", "list", storage=tmp_path / "env").stdout.strip() == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["channel", "create", "../x"], "Channel name '../x' is invalid"),
        (["channel", "delete", "nope"], "Channel 'nope' does not exist."),
        (
            ["token", "create", "--channel", "x", "--scope", "write", "--expires", "soon"],
            "duration 'soon'",
        ),
        (["token", "revoke", "zz"], "token id 'zz'"),
        (["serve", "--max-upload-size", "lots"], "setting max_upload_size (from argument)"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli(*args, storage=tmp_path / "data", check=False)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_duplicate_channel_is_an_error(tmp_path: Path) -> None:
    cli("channel", "create", "x", storage=tmp_path)
    result = cli("channel", "create", "x", storage=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr == "private-channels: error: Channel 'x' exists already.\n"


def test_unreachable_storage_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("channel", "list", storage=blocker / "sub", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("private-channels: error: cannot open storage:")
    assert result.stderr.count("\n") == 1
    result = cli("channel", "list", storage="ftp://nowhere", check=False)
    assert result.returncode == 1 and "unknown scheme" in result.stderr


def test_bad_arguments_exit_nonzero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "private_channels", "serve", "--port", "99999"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "port 99999" in result.stderr


def test_serve_uses_default_storage_and_answers(tmp_path: Path) -> None:
    # No --storage and no environment variable: ./private-channels-data in the cwd.
    process = subprocess.Popen(
        [sys.executable, "-m", "private_channels", "serve", "--port", "0"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "PRIVATE_CHANNELS_STORAGE"},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "private-channels-data" in line
        url = line.rsplit(" on ", 1)[1].strip()
        assert url.endswith("/api/repo/")
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(url + "team/simple/")
        excinfo.value.close()
        assert excinfo.value.code == 401
        assert (tmp_path / "private-channels-data").is_dir()
    finally:
        process.terminate()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


def test_serve_under_another_prefix(tmp_path: Path) -> None:
    with live_server(str(tmp_path / "d"), tmp_path, prefix="/pkgs") as server:
        assert server.url.endswith("/pkgs")
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(server.url.removesuffix("/pkgs") + "/elsewhere")
        excinfo.value.close()
        assert excinfo.value.code == 404


def test_serve_on_a_busy_port_is_an_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cli("serve", "--port", str(port), storage=tmp_path, check=False)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr


def test_gc_removes_only_old_orphans(tmp_path: Path) -> None:
    import io
    import os

    from private_channels.storage import FileSystemStorage

    from .packages import make_wheel
    from .support import test_app as app_for

    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    token = cli(
        "token", "create", "--channel", "team", "--scope", "write", storage=data
    ).stdout.splitlines()[-1]
    wheel = make_wheel(tmp_path, "demo", "1.0")
    storage = FileSystemStorage(data)
    app = app_for(storage, "/api/repo")
    app.post(
        "/api/repo/team/",
        {":action": "file_upload", "protocol_version": "1"},
        upload_files=[("content", wheel.name, wheel.read_bytes())],
        headers={"X-Auth": token},
        content_type="multipart/form-data",
    )
    kept = sorted(storage.list("channels/team/pypi/blobs/"))
    assert len(kept) == 2  # the wheel and its METADATA
    # What uploads killed between writing a blob and committing it leave behind:
    orphans = {
        "channels/team/pypi/blobs/" + "a" * 64 + "/demo-2.0-py3-none-any.whl": 7200,
        "channels/team/cran/blobs/" + "b" * 64 + "/abc_1.0.tar.gz": 7200,
        "channels/team/cran/blobs/" + "c" * 64 + "/abc_2.0.tar.gz": 60,  # may yet commit
    }
    for key, age in orphans.items():
        storage.create(key, io.BytesIO(b"partial"))
        when = os.path.getmtime(data / key) - age
        os.utime(data / key, (when, when))
    for key in kept:
        os.utime(data / key, (1, 1))  # old, but named by a record
    result = cli("gc", "team", storage=data)
    removed = sorted(line.removeprefix("removed ") for line in result.stdout.splitlines())
    assert removed == sorted(k for k, age in orphans.items() if age > 3600)
    left = set(storage.list("channels/team/"))
    assert set(kept) <= left
    assert "channels/team/cran/blobs/" + "c" * 64 + "/abc_2.0.tar.gz" in left
    assert cli("gc", "nope", storage=data, check=False).returncode == 1


def test_channel_upstreams_are_set_changed_and_listed_without_credentials(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = cli(
        "channel", "create", "team", "--python-upstream", "https://robot:s3cret@pypi.example/simple",
        "--upstream-allow", "acme-utils", "--upstream-ttl", "5m", storage=data,
    )  # fmt: skip
    assert created.stdout.split("\t") == [
        "team", "private", "python-upstream=https://pypi.example/simple/ (with credentials)",
        "upstream-allow=acme-utils", "upstream-ttl=300s", "upstream-min-age=0d\n",
    ]  # fmt: skip
    cli("channel", "update", "team", "--cran-upstream", "https://cran.example",
        "--upstream-allow", "other", "--upstream-disallow", "acme-utils",
        "--upstream-min-age", "3", storage=data)  # fmt: skip
    cli("channel", "update", "team", "--no-python-upstream", "--public", storage=data)
    listed = cli("channel", "list", storage=data).stdout
    assert listed == (
        "team\tpublic\tcran-upstream=https://cran.example/\tupstream-allow=other\t"
        "upstream-ttl=300s\tupstream-min-age=3d\n"
    )
    assert "s3cret" not in created.stdout + created.stderr + listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["channel", "update", "team"], "name a setting to change"),
        (["channel", "update", "nope", "--upstream-ttl", "1m"], "Channel 'nope' does not exist."),
        (["channel", "update", "team", "--python-upstream", "ftp://x"],
         "The Python upstream URL must start with http:// or https://"),
        (["channel", "create", "new", "--upstream-allow", "a b"], "'a b' is not a project"),
        (["channel", "update", "team", "--upstream-ttl", "40d"], "between 0 and 30 days"),
    ],
)  # fmt: skip
def test_channel_update_errors(tmp_path: Path, args: list[str], message: str) -> None:
    cli("channel", "create", "team", storage=tmp_path)
    result = cli(*args, storage=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_channel_update_takes_effect_on_a_running_server(tmp_path: Path) -> None:
    with live_server(str(tmp_path / "d"), tmp_path) as server:
        server.cli("channel", "create", "team")
        token = server.token("team", "read")
        request = urllib.request.Request(f"{server.url}/team/simple/anything/",
                                         headers={"X-Auth": token})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as before:
            urllib.request.urlopen(request, timeout=30)
        before.value.close()
        assert before.value.code == 404
        # No restart: the next request reads the channel's record afresh.
        server.cli("channel", "update", "team", "--python-upstream", "http://127.0.0.1:9/simple/")
        with pytest.raises(urllib.error.HTTPError) as after:
            urllib.request.urlopen(request, timeout=30)
        after.value.close()
        assert after.value.code == 502  # now it asks the upstream, which is not there
