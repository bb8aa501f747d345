"""Conda uploads at POST P/<CHANNEL>, and yank/unyank/delete of conda files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import webtest

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.app import ecosystems
from private_channels.core.manage import change_files
from private_channels.storage import MemoryStorage, Storage

from .archives import tar
from .conda_packages import build_conda, demo_index, raw_conda
from .support import cli, test_app
from .test_cran_upload import PREFIXES
from .test_cran_upload import Channel as CranChannel


class Channel(CranChannel):
    """The CRAN tests' channel "team" (tokens write and read), with an admin token and
    conda's form and documents."""

    def __init__(self, storage: Storage, prefix: str = "/api/repo") -> None:
        super().__init__(storage, prefix)
        self.admin, _ = TokenStore(storage).create(channels=["team"], scope=Scope.ADMIN)

    def upload(  # type: ignore[no-untyped-def,override]
        self, data: bytes, filename: str, filetype: str = "conda_package", **kwargs
    ) -> webtest.TestResponse:
        return super().upload(data, filename, filetype, **kwargs)

    def get(self, path: str, **kwargs) -> webtest.TestResponse:  # type: ignore[no-untyped-def]
        headers = {"X-Auth": self.read, **kwargs.pop("headers", {})}
        return self.app.get(f"{self.url}/{path}", headers=headers, **kwargs)

    def repodata(self, subdir: str = "noarch") -> dict:  # type: ignore[type-arg]
        return json.loads(self.get(f"{subdir}/repodata.json").body)

    def conda_keys(self) -> list[str]:
        return list(self.storage.list("channels/team/conda/"))


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("conda-upload")
    paths = [
        build_conda(tmp, "alpha", "1.0", "0", extension=".tar.bz2"),
        build_conda(tmp, "beta", "1.0", "0", depends=["alpha >=1.0"]),
        build_conda(tmp, "gamma", "1.0", "h1_0", subdir="linux-64"),
    ]
    return {path.name: path.read_bytes() for path in paths}


@pytest.fixture(params=PREFIXES)
def channel(request: pytest.FixtureRequest, storage: Storage) -> Channel:
    return Channel(storage, request.param)


def test_uploads_are_listed_at_once(channel: Channel, packages: dict[str, bytes]) -> None:
    for filename, data in packages.items():
        answer = channel.upload(data, filename)
        assert answer.text.startswith(f"Uploaded {filename} to ")
    noarch = channel.repodata()
    assert list(noarch["packages"]) == ["alpha-1.0-0.tar.bz2"]
    assert list(noarch["packages.conda"]) == ["beta-1.0-0.conda"]
    assert list(channel.repodata("linux-64")["packages.conda"]) == ["gamma-1.0-h1_0.conda"]
    # The same bytes again: 200, nothing written.
    keys = channel.conda_keys()
    again = channel.upload(packages["beta-1.0-0.conda"], "beta-1.0-0.conda")
    assert "already in noarch/ with the same bytes" in again.text
    assert channel.conda_keys() == keys


def test_other_bytes_under_the_same_name_conflict(tmp_path: Path) -> None:
    channel = Channel(MemoryStorage())
    first = build_conda(tmp_path / "a", "beta", "1.0", "0")
    other = build_conda(tmp_path / "b", "beta", "1.0", "0", depends=["x"])
    channel.upload(first.read_bytes(), first.name)
    keys = channel.conda_keys()
    answer = channel.upload(other.read_bytes(), other.name, status=409)
    assert answer.status.startswith("409 File already exists")
    assert "beta-1.0-0.conda in noarch/ was uploaded with other bytes" in answer.text
    assert channel.conda_keys() == keys


@pytest.mark.parametrize(
    ("data", "filename", "says"),
    [
        (lambda: raw_conda({"info/index.json": demo_index()}), "demo-2.0-0.conda",
         "The file is named 'demo-2.0-0.conda' but its info/index.json says version '1.0'"),
        (lambda: raw_conda({"info/index.json": demo_index(subdir="linux-99")}),
         "demo-1.0-0.conda", "The package's subdir 'linux-99' is not a conda subdir"),
        (lambda: raw_conda({"info/index.json": demo_index()}, pkg=tar(("a/../../b", b""))),
         "demo-1.0-0.conda", "member 'a/../../b' has an unsafe path"),
        (lambda: b"not a package", "demo.conda", "'demo.conda' is not a conda package filename"),
        (lambda: b"", "demo-1.0-0.conda", "The uploaded package file is empty."),
        (lambda: raw_conda({"info/index.json": demo_index()}), "", "is not a conda package"),
    ],
)  # fmt: skip
def test_bad_uploads_get_a_400_and_leave_nothing(data: object, filename: str, says: str) -> None:
    channel = Channel(MemoryStorage())
    answer = channel.upload(data(), filename, status=400)  # type: ignore[operator]
    assert says in answer.status and says in answer.text
    assert channel.conda_keys() == []


def test_without_zstandard_a_conda_upload_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, packages: dict[str, bytes]
) -> None:
    channel = Channel(MemoryStorage())
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)
    answer = channel.upload(packages["beta-1.0-0.conda"], "beta-1.0-0.conda", status=501)
    assert "the conda extra: pip install 'zstandard>=0.22' 'msgpack>=1.0'" in answer.text
    # A .tar.bz2 needs no extra.
    channel.upload(packages["alpha-1.0-0.tar.bz2"], "alpha-1.0-0.tar.bz2")


def test_upload_needs_write(packages: dict[str, bytes]) -> None:
    channel = Channel(MemoryStorage())
    data = packages["alpha-1.0-0.tar.bz2"]
    channel.upload(data, "alpha-1.0-0.tar.bz2", token=None, status=401)
    channel.upload(data, "alpha-1.0-0.tar.bz2", token="read", status=403)
    assert channel.conda_keys() == []


def test_an_unknown_filetype_names_the_conda_form() -> None:
    channel = Channel(MemoryStorage())
    answer = channel.upload(b"x", "x", filetype="conda", status=400)
    assert "'filetype=conda_package' (curl)" in answer.text


# -- yank, unyank, delete ----------------------------------------------------------------


def test_yank_unyank_and_delete(packages: dict[str, bytes]) -> None:
    channel = Channel(MemoryStorage())
    for filename, data in packages.items():
        channel.upload(data, filename)
    served = ecosystems(channel.storage)
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None

    target, files = change_files(served, team, "yank", "beta-1.0-0.conda", reason="broken")
    assert (target.ecosystem, files) == ("conda", ["noarch/beta-1.0-0.conda"])
    noarch = channel.repodata()
    assert noarch["packages.conda"] == {} and noarch["removed"] == ["beta-1.0-0.conda"]
    # Still downloadable: a lock file that names it keeps working.
    assert channel.get("noarch/beta-1.0-0.conda").body == packages["beta-1.0-0.conda"]

    change_files(served, team, "unyank", "beta-1.0-0.conda")
    assert list(channel.repodata()["packages.conda"]) == ["beta-1.0-0.conda"]

    # Over HTTP, with an admin token, like any ecosystem's files.
    channel.app.post(f"{channel.url}/-/delete", {"filename": "alpha-1.0-0.tar.bz2"},
                     headers={"X-Auth": channel.admin})  # fmt: skip
    assert channel.repodata()["packages"] == {}
    channel.get("noarch/alpha-1.0-0.tar.bz2", status=404)
    assert not [k for k in channel.conda_keys() if k.endswith("alpha-1.0-0.tar.bz2")]
    answer = channel.upload(packages["alpha-1.0-0.tar.bz2"], "alpha-1.0-0.tar.bz2", status=409)
    assert "was deleted from this channel" in answer.text

    with pytest.raises(LookupError, match=r"has no file 'zeta-1\.0-0\.conda'"):
        change_files(served, team, "yank", "zeta-1.0-0.conda")


def test_one_filename_in_two_subdirs_is_changed_in_both() -> None:
    channel = Channel(MemoryStorage())
    for subdir in ("linux-64", "osx-64"):
        index = demo_index(subdir=subdir, noarch=False)
        channel.upload(raw_conda({"info/index.json": index}), "demo-1.0-0.conda")
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None
    _, files = change_files(ecosystems(channel.storage), team, "yank", "demo-1.0-0.conda")
    assert files == ["linux-64/demo-1.0-0.conda", "osx-64/demo-1.0-0.conda"]


def test_the_command_line_yanks_conda_files(tmp_path: Path, packages: dict[str, bytes]) -> None:
    storage = tmp_path / "data"
    cli("channel", "create", "team", storage=storage)
    token = cli("token", "create", "--channel", "team", "--scope", "write", storage=storage)
    app = test_app(__import__("private_channels").open_storage(str(storage)))
    app.post("/api/repo/team", {"filetype": "conda_package"},
             upload_files=[("content", "beta-1.0-0.conda", packages["beta-1.0-0.conda"])],
             headers={"X-Auth": token.stdout.split()[-1]})  # fmt: skip
    result = cli("yank", "team", "beta-1.0-0.conda", "--reason", "broken", storage=storage)
    assert "beta-1.0-0.conda" in result.stdout + result.stderr
    bad = cli("yank", "team", "beta-1.0-1.conda", storage=storage, check=False)
    assert bad.returncode != 0 and "has no file 'beta-1.0-1.conda'" in bad.stderr


def test_a_conda_tar_bz2_is_not_taken_for_a_python_file() -> None:
    channel = Channel(MemoryStorage())
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None
    from private_channels.core.manage import find_target

    assert find_target(ecosystems(channel.storage), team, "abc-1.0-0.tar.bz2").ecosystem == "conda"
    assert find_target(ecosystems(channel.storage), team, "abc-1.0.tar.gz").ecosystem == "python"


def test_garbage_collection_keeps_what_records_name(packages: dict[str, bytes]) -> None:
    channel = Channel(MemoryStorage())
    channel.upload(packages["beta-1.0-0.conda"], "beta-1.0-0.conda")
    orphan = f"channels/team/conda/blobs/{'0' * 64}/beta-9.9-0.conda"
    channel.storage.put(orphan, io.BytesIO(b"left by a killed upload"))
    team = ChannelRegistry(channel.storage).get("team")
    assert team is not None
    conda = next(e for e in ecosystems(channel.storage) if e.name == "conda")
    assert conda.collect_garbage(team, 0.0) == [orphan]
    assert channel.get("noarch/beta-1.0-0.conda").body == packages["beta-1.0-0.conda"]


def test_a_version_with_an_epoch_is_stored_and_served() -> None:
    channel = Channel(MemoryStorage())
    data = raw_conda({"info/index.json": demo_index(version="1!2.0")}, stem="demo-1!2.0-0")
    channel.upload(data, "demo-1!2.0-0.conda")
    assert list(channel.repodata()["packages.conda"]) == ["demo-1!2.0-0.conda"]
    assert channel.get("noarch/demo-1!2.0-0.conda").body == data
