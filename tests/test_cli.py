"""The command line, run as a user runs it: a subprocess with its exit code and output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .support import cli, live_server, wait_for


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
    cli("channel", "create", "y", storage=tmp_path / "env")
    cli("channel", "create", "x", "--storage", str(tmp_path / "flag"), storage=tmp_path / "env")
    assert cli("channel", "list", storage=tmp_path / "flag").stdout.strip() == "x\tprivate"
    assert cli("channel", "list", storage=tmp_path / "env").stdout.strip() == "y\tprivate"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["channel", "create", "../x"], "Channel name '../x' is invalid"),
        (["channel", "delete", "nope"], "Channel 'nope' does not exist."),
        (
            ["token", "create", "--channel", "x", "--scope", "write", "--expires", "soon"],
            "duration 'soon'",
        ),
        (["token", "revoke", "zz"], "'token revoke' takes a token's id: 12 lowercase"),
        (["serve", "--max-upload-size", "lots"], "setting max_upload_size (from argument)"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path: Path, args: list[str], message: str) -> None:
    cli("channel", "create", "existing", storage=tmp_path / "data")
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


def _gc_with_orphans(
    storage: Any, data: Path, orphans: dict[str, int], kept: list[str]
) -> set[str]:
    """Plant ``orphans`` (key: age in seconds; a hidden ``.tmp-`` name is a file of a
    write killed halfway), make the ``kept`` files (named by records) old, run ``gc
    team``; check it removed the orphans past its hour of grace and kept the others;
    what is left of the channel."""
    import io

    for key, age in orphans.items():
        if "/.tmp-" in key:
            (data / key).write_bytes(b"half a document")
        else:
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
    return left


def test_gc_removes_only_old_orphans(tmp_path: Path) -> None:
    import hashlib

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
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    app.get(f"/api/repo/team/files/{sha256}/{wheel.name}.metadata", headers={"X-Auth": token})
    kept = sorted(storage.list("channels/team/pypi/blobs/"))
    assert len(kept) == 2  # the wheel and its METADATA (written on its first read)
    # What uploads killed between writing a blob and committing it leave behind:
    orphans = {
        "channels/team/pypi/blobs/" + "a" * 64 + "/demo-2.0-py3-none-any.whl": 7200,
        "channels/team/cran/blobs/" + "b" * 64 + "/abc_1.0.tar.gz": 7200,
        "channels/team/cran/blobs/" + "c" * 64 + "/abc_2.0.tar.gz": 60,  # may yet commit
        # A document's write killed between its link and its rename; one in progress.
        "channels/team/pypi/projects/.tmp-0123456789abcdef": 7200,
        "channels/team/pypi/projects/.tmp-fedcba9876543210": 1,
    }
    left = _gc_with_orphans(storage, data, orphans, kept)
    assert "channels/team/cran/blobs/" + "c" * 64 + "/abc_2.0.tar.gz" in left
    assert cli("gc", "nope", storage=data, check=False).returncode == 1


def test_gc_sweeps_orphans_of_upstream_fetches_and_keeps_fetched_files(tmp_path: Path) -> None:
    """A fetch from an upstream killed between its blob and its record leaves an orphan
    under ``upstream/blobs/``; gc removes it once old, and keeps every fetched file."""
    import hashlib
    import io

    from private_channels.core.blobs import RecordDocument, store_blob
    from private_channels.core.proxy import UpstreamFile, blob_key
    from private_channels.storage import FileSystemStorage

    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    storage = FileSystemStorage(data)
    fetched = []
    for ecosystem, filename, document in (
        ("pypi", "demo-1.0-py3-none-any.whl", "demo.json"),
        ("pypi", "demo-1.0-py3-none-any.whl.metadata", "demo.json"),
        ("cran", "abc_1.0.tar.gz", "src/contrib/abc.json"),
    ):
        content = f"{ecosystem} {filename}".encode()
        record = UpstreamFile(
            filename=filename, size=len(content), sha256=hashlib.sha256(content).hexdigest(),
            upload_time=1.0, source="", url="https://upstream.example/" + filename,
        )  # fmt: skip
        upstream = f"channels/team/{ecosystem}/upstream/"
        files = RecordDocument(storage, f"{upstream}files/{document}")
        key = blob_key(f"{upstream}blobs/", record)
        store_blob(
            storage,
            {key: io.BytesIO(content)},
            commit=lambda files=files, record=record: files.add(record.to_json()),  # type: ignore[misc]
            referenced=lambda: True,
        )
        fetched.append(key)
    orphans = {
        "channels/team/pypi/upstream/blobs/" + "a" * 64 + "/demo-2.0.tar.gz": 7200,
        "channels/team/cran/upstream/blobs/" + "b" * 64 + "/abc_2.0.tar.gz": 7200,
        "channels/team/cran/upstream/blobs/" + "c" * 64 + "/abc_3.0.tar.gz": 60,  # fetching
    }
    left = _gc_with_orphans(storage, data, orphans, fetched)
    assert "channels/team/cran/upstream/blobs/" + "c" * 64 + "/abc_3.0.tar.gz" in left


def test_serve_request_log_never_shows_a_token_with_the_access_log_off(tmp_path: Path) -> None:
    """werkzeug logs each request line as the client sent it: every spelling of a token
    in it is redacted, also encoded twice or after an encoded slash."""
    import http.client

    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    token = cli(
        "token", "create", "--channel", "team", "--scope", "read", storage=data
    ).stdout.splitlines()[-1]
    paths = [
        f"/api/repo/t/{token}/team/simple/",
        f"/api/repo/x%2F{token}/simple/",
        f"/api/repo/t%2F{token}/team/simple/",
        f"/api/repo/t%252F{token}/team/simple/",
        f"/api/repo/%252F{token}/simple/",
        f"/api/repo/team/simple/x%2F{token}/",
        f"/api/repo/{token}/simple/",
    ]
    env = {"PRIVATE_CHANNELS_LOG_FORMAT": "off"}
    with live_server(str(data), tmp_path, extra_env=env, server="werkzeug") as server:
        host = server.url.removeprefix("http://").partition("/")[0]
        for path in paths:
            connection = http.client.HTTPConnection(host, timeout=30)
            connection.request("GET", path)
            connection.getresponse().read()
            connection.close()
        wait_for(lambda: server.log_text().count(" HTTP/1.1") >= len(paths), log=server.log)
    text = server.log_text()
    assert text.count(" HTTP/1.1") == len(paths), text
    assert token not in text, text
    assert '"GET /api/repo/t/<redacted>/team/simple/ HTTP/1.1" 200' in text


# -- which storage, and never a new one by mistake --------------------------------------


def run_in(directory: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The command as a user runs it in ``directory``, with no storage variable set."""
    environ = {k: v for k, v in os.environ.items() if k != "PRIVATE_CHANNELS_STORAGE"}
    return subprocess.run(
        [sys.executable, "-m", "private_channels", *args],
        capture_output=True, text=True, cwd=directory, env={**environ, **(env or {})},
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["token", "create", "--channel", "data-team", "--scope", "write"],
        ["token", "create", "--channel", "*", "--channel", "data-team", "--scope", "read"],
        ["token", "list"],
        ["token", "revoke", "0123456789ab"],
        ["channel", "list"],
        ["channel", "delete", "data-team"],
        ["yank", "data-team", "demo-1.0.tar.gz"],
        ["gc", "data-team"],
    ],
)
def test_commands_that_name_a_channel_or_token_never_make_a_storage(
    tmp_path: Path, args: list[str]
) -> None:
    """Run from another directory than the storage's, a command fails, says where it
    looked, and leaves no new, empty storage there (whose token would never work)."""
    result = run_in(tmp_path, *args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    expected = f"nothing is stored at {tmp_path.resolve() / 'private-channels-data'} "
    assert expected + "(the default, ./private-channels-data)" in result.stderr
    assert not (tmp_path / "private-channels-data").exists()
    assert result.stdout == ""


def test_the_first_storage_is_started_by_channel_create_or_a_token_for_every_channel(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run_in(tmp_path / "a", "channel", "create", "data-team").returncode == 0
    created = run_in(tmp_path / "b", "token", "create", "--channel", "*", "--scope", "admin")
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "a" / "private-channels-data" / "registry").is_dir()
    assert (tmp_path / "b" / "private-channels-data" / "registry").is_dir()


def test_token_create_needs_the_channels_it_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    result = cli("token", "create", "--channel", "nosuch", "--scope", "read", storage=data,
                 check=False)  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "private-channels: error: Channel 'nosuch' does not exist; create it first (a token "
        "made before its channel never works on it). Searched storage "
        f"{data.resolve()} (from PRIVATE_CHANNELS_STORAGE).\n"
    )
    result = cli("token", "create", "--channel", "team", "--channel", "nosuch", "--scope",
                 "read", storage=data, check=False)  # fmt: skip
    assert result.returncode == 1 and "'nosuch' does not exist" in result.stderr
    assert cli("token", "list", storage=data).stdout == ""  # no token was made
    for channels in (["team"], ["*"], ["team", "*"]):
        flags = [flag for name in channels for flag in ("--channel", name)]
        cli("token", "create", *flags, "--scope", "read", storage=data)
    assert len(cli("token", "list", storage=data).stdout.splitlines()) == 3


@pytest.mark.parametrize("source", ["flag", "variable", "default"])
def test_every_command_says_which_storage_it_used(tmp_path: Path, source: str) -> None:
    data = tmp_path / "private-channels-data"
    flag = ["--storage", str(data)] if source == "flag" else []
    env = {"PRIVATE_CHANNELS_STORAGE": str(data)} if source == "variable" else {}
    said = {
        "flag": "(from --storage)",
        "variable": "(from PRIVATE_CHANNELS_STORAGE)",
        "default": "(the default, ./private-channels-data)",
    }[source]
    commands = [
        ["channel", "create", "team"],
        ["channel", "list"],
        ["token", "create", "--channel", "team", "--scope", "write"],
        ["token", "list"],
        ["gc", "team"],
    ]
    for args in commands:
        result = run_in(tmp_path, *args, *flag, env=env)
        assert result.returncode == 0, result.stderr
        last = result.stderr.splitlines()[-1]
        assert last == f"private-channels: storage {data.resolve()} {said}", result.stderr
    token_id = run_in(tmp_path, "token", "list", *flag, env=env).stdout.split("\t")[0]
    result = run_in(tmp_path, "token", "revoke", token_id, *flag, env=env)
    assert result.stderr.splitlines()[-1].startswith(f"private-channels: storage {data.resolve()}")


def test_token_revoke_never_echoes_a_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    created = cli("token", "create", "--channel", "team", "--scope", "read", storage=data)
    secret = created.stdout.splitlines()[-1]
    token_id = cli("token", "list", storage=data).stdout.split("\t")[0]
    result = cli("token", "revoke", secret, storage=data, check=False)
    assert result.returncode == 1 and secret not in result.stderr + result.stdout
    assert f"this token's id is {token_id}: private-channels token revoke {token_id}" in (
        result.stderr
    )
    for wrong in (secret[:-1] + "x", secret.upper(), "not-an-id " + secret):
        result = cli("token", "revoke", wrong, storage=data, check=False)
        assert result.returncode == 1 and wrong not in result.stderr
        assert secret not in result.stderr and result.stderr.count("\n") == 1
    assert "active" in cli("token", "list", storage=data).stdout  # nothing was revoked


def test_a_token_given_for_a_channel_name_is_not_echoed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    secret = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"
    for args in (["yank", secret, "demo-1.0.tar.gz"], ["token", "create", "--channel", secret,
                                                        "--scope", "read"]):  # fmt: skip
        result = cli(*args, storage=data, check=False)
        assert result.returncode == 1 and secret not in result.stderr, result.stderr


def test_version_and_help_texts() -> None:
    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "private_channels", *args],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return result.stdout

    from importlib.metadata import version

    assert run("--version") == f"private-channels {version('private-channels')}\n"
    channel = run("channel", "--help")
    for action in ("create", "list", "delete"):
        assert re.search(rf"^    {action} +\S", channel, re.M), channel
    token = run("token", "--help")
    for action in ("create", "list", "revoke"):
        assert re.search(rf"^    {action} +\S", token, re.M), token
    serve = run("serve", "--help")
    assert re.search(r"--host HOST +address to listen on", serve), serve
    assert re.search(r"--port PORT +port to listen on", serve), serve


# -- copy -------------------------------------------------------------------------------


def stock(data: Path, tmp_path: Path) -> dict[str, str]:
    """A deployment on the filesystem: two channels, tokens, a wheel, an sdist and an R
    package, uploaded through the app."""
    import webtest

    from private_channels import make_app
    from private_channels.storage import FileSystemStorage

    from .packages import make_sdist, make_wheel
    from .test_examples import r_source_package

    cli("channel", "create", "team", storage=data)
    cli("channel", "create", "docs", "--public", storage=data)
    token = cli("token", "create", "--channel", "team", "--scope", "write", storage=data)
    secret = token.stdout.splitlines()[-1]
    app = webtest.TestApp(make_app(FileSystemStorage(data)))
    for path in (make_wheel(tmp_path, "demo", "1.0"), make_sdist(tmp_path, "demo", "1.0")):
        app.post("/team", {":action": "file_upload"},
                 upload_files=[("content", path.name, path.read_bytes())],
                 headers={"X-Auth": secret})  # fmt: skip
    app.post("/team", {"filetype": "cran_source_package"},
             upload_files=[("content", "abc_1.0.tar.gz", r_source_package("abc", "1.0"))],
             headers={"X-Auth": secret})  # fmt: skip
    return {"token": secret}


def contents(storage: Any) -> dict[str, bytes]:
    from private_channels.storage import read_bytes

    return {key: read_bytes(storage, key)[0] for key in storage.list("")}


def test_copy_moves_a_deployment_to_s3_and_back(tmp_path: Path, seaweedfs: Any) -> None:
    """filesystem -> SeaweedFS -> filesystem: every key, byte for byte; the tokens made
    before the move still work on the copy, and its indexes list what was uploaded."""
    import webtest

    from private_channels import make_app
    from private_channels.storage import FileSystemStorage

    data = tmp_path / "data"
    secret = stock(data, tmp_path)["token"]
    original = contents(FileSystemStorage(data))
    url = seaweedfs.url()
    copied = cli("copy", str(data), url, storage="unused", env=seaweedfs.env)
    assert copied.stderr == (
        f"copied {len(original)} keys ({sum(map(len, original.values()))} bytes) from "
        f"{data.resolve()} to {seaweedfs.storage(url.split('/')[3].split('?')[0])!r}\n"
    )
    s3 = seaweedfs.storage(url.split("/")[3].split("?")[0])
    assert contents(s3) == original
    app = webtest.TestApp(make_app(s3))
    page = app.get("/team/simple/demo/", headers={"X-Auth": secret,
                   "Accept": "application/vnd.pypi.simple.v1+json"})  # fmt: skip
    assert sorted(f["filename"] for f in page.json["files"]) == [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0.tar.gz",
    ]
    assert b"Package: abc" in app.get("/team/src/contrib/PACKAGES", headers={"X-Auth": secret}).body
    app.get("/docs/simple/")  # public, as it was

    back = tmp_path / "back"
    cli("copy", url, str(back), storage="unused", env=seaweedfs.env)
    assert contents(FileSystemStorage(back)) == original

    # Only into an empty storage; and never from one that does not exist.
    again = cli("copy", str(data), str(back), storage="unused", check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr
    assert again.stderr.count("\n") == 1
    assert contents(FileSystemStorage(back)) == original
    missing = cli("copy", str(tmp_path / "nowhere"), str(tmp_path / "new"), storage="unused",
                  check=False)  # fmt: skip
    assert missing.returncode == 1 and "nothing is stored at" in missing.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "new").exists()


def test_a_storage_stays_started_when_its_last_channel_is_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("channel", "create", "team", storage=data)
    cli("channel", "delete", "team", "--yes", storage=data)
    assert cli("channel", "list", storage=data).stdout == ""


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
