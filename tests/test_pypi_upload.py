"""The legacy upload API over WSGI: what is accepted, recorded, and refused with which sentence."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import webtest
from werkzeug.wrappers import Response

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.auth import TokenAuthMiddleware
from private_channels.channels import FORMAT_KEY, keeps_blobs_flat
from private_channels.core.ecosystem import Upload
from private_channels.core.upload import UploadMiddleware
from private_channels.pypi.ecosystem import PythonEcosystem
from private_channels.pypi.store import PythonStore
from private_channels.routing import ChannelMiddleware
from private_channels.storage import Storage

from .packages import make_sdist, make_wheel, metadata_text
from .support import mounted, test_app

PREFIXES = ["/api/repo", "/deep/er/mount"]


@pytest.fixture(params=PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Channel:
    """A channel with tokens, and an app mounted under a prefix to upload to it."""

    def __init__(
        self, storage: Storage, prefix: str, *, allow_reupload: bool = False, **options: Any
    ) -> None:
        self.storage = storage
        self.channel = ChannelRegistry(storage).create("team", allow_reupload=allow_reupload)
        tokens = TokenStore(storage)
        self.token, self.token_id = self._token(tokens, Scope.WRITE)
        self.read_token, _ = self._token(tokens, Scope.READ)
        self.app = test_app(storage, prefix, **options)
        self.url = f"{prefix}/team"
        self.store = PythonStore(storage)

    @staticmethod
    def _token(tokens: TokenStore, scope: Scope) -> tuple[str, str]:
        secret, token = tokens.create(channels=["team"], scope=scope)
        return secret, token.id

    def post(
        self,
        path: Path | None,
        *,
        status: int = 200,
        fields: dict[str, str | None] | None = None,
        filename: str | None = None,
        data: bytes | None = None,
        auth: str | None = "write",
        slash: bool = True,
    ) -> webtest.TestResponse:
        """Post ``path`` the way twine does; ``fields`` override (None removes) a field."""
        content = data if data is not None else (path.read_bytes() if path else b"")
        name = filename or (path.name if path else "")
        form: dict[str, str | None] = {
            ":action": "file_upload",
            "protocol_version": "1",
            "filetype": "bdist_wheel" if name.endswith(".whl") else "sdist",
            "pyversion": "py3" if name.endswith(".whl") else "source",
            "metadata_version": "2.1",
            "name": name.split("-")[0],
            "version": name.split("-")[1].removesuffix(".tar.gz") if "-" in name else "",
            "sha256_digest": hashlib.sha256(content).hexdigest(),
            "blake2_256_digest": hashlib.blake2b(content, digest_size=32).hexdigest(),
            "md5_digest": hashlib.md5(content, usedforsecurity=False).hexdigest(),
        }
        form.update(fields or {})
        params = [(k, v) for k, v in form.items() if v is not None]
        headers = {}
        if auth is not None:
            headers["X-Auth"] = {"write": self.token, "read": self.read_token}.get(auth, auth)
        return self.app.post(
            self.url + ("/" if slash else ""),
            params,
            upload_files=[("content", name, content)] if name else [],
            headers=headers,
            status=status,
            content_type="multipart/form-data",
        )

    def listing(self) -> list[str]:
        return sorted(self.storage.list(""))


def reason(response: webtest.TestResponse) -> str:
    return str(response.status).split(" ", 1)[1]


@pytest.fixture
def team(storage: Storage, prefix: str) -> Channel:
    return Channel(storage, prefix)


def test_wheel_and_sdist_are_recorded_for_the_index(team: Channel, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.9")
    sdist = make_sdist(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.9")
    answer = team.post(wheel, slash=False)
    assert "Uploaded demo_pkg-1.0-py3-none-any.whl" in answer.text
    team.post(sdist, fields={"name": "Demo.Pkg"})
    project = team.store.project(team.channel, "demo-pkg")
    assert project is not None and project.display_name == "Demo.Pkg"
    records = {r.filename: r for r in project.files}
    assert set(records) == {wheel.name, sdist.name}
    for path in (wheel, sdist):
        record, data = records[path.name], path.read_bytes()
        assert record.project == "demo-pkg" and record.version == "1.0"
        assert record.size == len(data)
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        assert record.blake2b_256 == hashlib.blake2b(data, digest_size=32).hexdigest()
        assert record.uploader == team.token_id
        assert record.requires_python == ">=3.9"
        assert record.yanked is None and record.upload_time > 0
        stream, _ = team.store.open_blob(team.channel, record.sha256, record.filename)
        with stream:
            assert stream.read() == data
    metadata = metadata_text("Demo.Pkg", "1.0", requires_python=">=3.9").encode()
    assert records[wheel.name].metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    stream, _ = team.store.open_blob(
        team.channel, records[wheel.name].sha256, wheel.name + ".metadata"
    )
    with stream:
        assert stream.read() == metadata  # verbatim, for PEP 658
    assert records[sdist.name].metadata_sha256 is None
    assert team.store.projects(team.channel)[0] == {"demo-pkg": "Demo.Pkg"}


@pytest.mark.parametrize("made_before_flat_blobs", [False, True])
def test_a_storage_made_before_flat_blobs_keeps_a_folder_for_each(
    storage: Storage, tmp_path: Path, made_before_flat_blobs: bool
) -> None:
    """A new storage's first channel says that its blobs are flat; a storage made by a
    version before flat blobs has channels and no such word, and keeps its folders, so
    that such a version can still serve what a later one stored (docs/upgrading.md)."""
    if made_before_flat_blobs:  # a channel record written as such a version wrote it
        ChannelRegistry(storage).create("older")
        storage.delete(FORMAT_KEY)
    team = Channel(storage, "/api/repo")
    assert keeps_blobs_flat(storage) is not made_before_flat_blobs
    wheel = make_wheel(tmp_path, "demo", "1.0")
    team.post(wheel)
    (record,) = team.store.project(team.channel, "demo").files  # type: ignore[union-attr]
    sha = record.sha256
    assert record.flat is not made_before_flat_blobs
    where = f"{sha}/{wheel.name}" if made_before_flat_blobs else f"{sha}-{wheel.name}"
    assert [k for k in storage.list("channels/team/pypi/blobs/") if k.endswith(".whl")] == [
        f"channels/team/pypi/blobs/{where}"
    ]
    answer = team.app.get(
        f"/api/repo/team/files/{sha}/{wheel.name}", headers={"X-Auth": team.token}
    )
    assert answer.body == wheel.read_bytes()


def test_same_file_again_changes_nothing(team: Channel, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    team.post(wheel)
    before = team.listing()
    project = team.store.project(team.channel, "demo")
    answer = team.post(wheel, slash=False)
    assert "already" in answer.text and "same content" in answer.text
    assert team.listing() == before
    assert team.store.project(team.channel, "demo") == project


def test_other_bytes_under_a_filename_conflict(team: Channel, tmp_path: Path) -> None:
    team.post(make_wheel(tmp_path, "demo", "1.0"))
    before = team.listing()
    other = tmp_path / "other"
    other.mkdir()
    answer = team.post(make_wheel(other, "demo", "1.0", module_source="X = 2\n"), status=409)
    assert reason(answer).startswith("File already exists")
    assert answer.text.startswith("File already exists")
    assert team.listing() == before


def test_deleted_filename_is_not_reusable(team: Channel, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    team.post(wheel)
    team.store.update_files(team.channel, "demo", lambda record: None)
    before = team.listing()
    answer = team.post(wheel, status=409)
    assert "was deleted" in reason(answer) and "new version" in reason(answer)
    assert team.listing() == before


def test_a_channel_may_allow_deleted_filenames_again(
    storage: Storage, prefix: str, tmp_path: Path
) -> None:
    team = Channel(storage, prefix, allow_reupload=True)
    first = make_wheel(tmp_path, "demo", "1.0")
    team.post(first)
    team.store.update_files(team.channel, "demo", lambda record: None)
    other = tmp_path / "other"
    other.mkdir()
    second = make_wheel(other, "demo", "1.0", module_source="X = 2\n")
    team.post(second)
    project = team.store.project(team.channel, "demo")
    assert project is not None and project.deleted == frozenset()
    [record] = project.files
    assert record.sha256 == hashlib.sha256(second.read_bytes()).hexdigest()
    stream, _ = team.store.open_blob(team.channel, record.sha256, record.filename)
    with stream:
        assert stream.read() == second.read_bytes()
    # Deleted again, it is remembered once, and the same bytes may come back too.
    team.store.update_files(team.channel, "demo", lambda record: None)
    team.store.update_files(team.channel, "demo", lambda record: None)
    assert team.store.project(team.channel, "demo").deleted == {first.name}  # type: ignore[union-attr]
    team.post(second)
    assert [f.filename for f in team.store.project(team.channel, "demo").files] == [first.name]  # type: ignore[union-attr]


def _sdist(directory: Path, stem: str, name: str, version: str, extra: bytes) -> Path:
    """An sdist under any filename stem, with its own bytes (``extra``)."""
    path = directory / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in {
            f"{stem}/PKG-INFO": metadata_text(name, version).encode(),
            f"{stem}/setup.py": extra,
        }.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("stem", "name", "version"),
    [("twin-1.0.0", "twin", "1.0.0"), ("Twin-1.0", "Twin", "1.0"), ("twin-1.0.post0", "", "")],
)
def test_one_sdist_per_release(
    team: Channel, tmp_path: Path, stem: str, name: str, version: str
) -> None:
    """As on PyPI: a release has one sdist, whatever its filename spells (1.0 and 1.0.0
    are one version, Twin and twin one project); wheels beside it are welcome."""
    first = _sdist(tmp_path, "twin-1.0", "twin", "1.0", b"# first")
    team.post(first, fields={"version": "1.0"})
    before = team.listing()
    if not name:  # another release: its own sdist
        team.post(_sdist(tmp_path, stem, "twin", "1.0.post0", b"# later"))
        return
    second = _sdist(tmp_path, stem, name, version, b"# second, other bytes")
    answer = team.post(second, status=400, fields={"name": name, "version": version})
    assert reason(answer).startswith("Only one sdist may be uploaded per release")
    assert "'twin-1.0.tar.gz' already" in answer.text and answer.text.count("\n") == 1
    assert team.listing() == before  # nothing of the refused upload stays
    # The same sdist again is still the harmless re-run, and wheels are still welcome.
    team.post(first, fields={"version": "1.0"})
    team.post(make_wheel(tmp_path, "twin", version))
    project = team.store.project(team.channel, "twin")
    assert project is not None
    assert sorted(f.filename for f in project.files) == [
        f"twin-{version}-py3-none-any.whl",
        "twin-1.0.tar.gz",
    ]


def test_one_sdist_per_release_holds_when_two_race(storage: Storage, tmp_path: Path) -> None:
    """Checked inside the commit: of two sdists of one release racing, one wins."""
    store = PythonStore(storage)
    channel = ChannelRegistry(storage).create("team")
    results: list[str] = []

    def upload(stem: str, version: str) -> None:
        app = test_app(storage, "/api/repo")
        token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
        path = _sdist(tmp_path, stem, "twin", version, stem.encode())
        answer = app.post(
            "/api/repo/team",
            {":action": "file_upload"},
            upload_files=[("content", path.name, path.read_bytes())],
            headers={"X-Auth": token},
            content_type="multipart/form-data",
            status="*",
        )
        results.append(str(answer.status_int))

    threads = [
        threading.Thread(target=upload, args=(stem, version))
        for stem, version in [("twin-2.0", "2.0"), ("twin-2.0.0", "2.0.0"), ("twin-2", "2")]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["200", "400", "400"]
    project = store.project(channel, "twin")
    assert project is not None and len(project.files) == 1


def test_attestations_are_accepted(team: Channel, tmp_path: Path) -> None:
    team.post(make_wheel(tmp_path, "demo", "1.0"), fields={"attestations": '[{"x": 1}]'})
    assert team.store.project(team.channel, "demo") is not None


def test_absent_optional_fields_are_fine(team: Channel, tmp_path: Path) -> None:
    absent: dict[str, str | None] = dict.fromkeys(
        ["protocol_version", "filetype", "pyversion", "name", "version", "md5_digest"]
    )
    absent.update(sha256_digest=None, blake2_256_digest=None)
    team.post(make_sdist(tmp_path, "demo", "1.0"), fields=absent)
    assert team.store.project(team.channel, "demo") is not None


def _escaping_sdist(directory: Path) -> tuple[str, bytes]:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"demo-1.0/PKG-INFO": metadata_text("demo", "1.0").encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("demo-1.0/../../../etc/cron.d/evil")
        archive.addfile(info, io.BytesIO(b""))
    return "demo-1.0.tar.gz", buffer.getvalue()


REJECTIONS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "bad sha256",
        {"fields": {"sha256_digest": "0" * 64}},
        400,
        "The sha256_digest sent does not match",
    ),
    (
        "bad blake2",
        {"fields": {"blake2_256_digest": "ab" * 32}},
        400,
        "The blake2_256_digest sent does not match",
    ),
    ("bad md5", {"fields": {"md5_digest": "0" * 32}}, 400, "The md5_digest sent does not match"),
    ("protocol 2", {"fields": {"protocol_version": "2"}}, 400, "Unknown upload protocol_version"),
    (
        "other action",
        {"fields": {":action": "submit"}},
        400,
        "The upload action 'submit' is not supported",
    ),
    (
        "no file",
        {"filename": None, "data": b"", "path": None},
        400,
        "no file in its 'content' field",
    ),
    (
        "not a distribution",
        {"filename": "demo-1.0.txt"},
        400,
        "neither a wheel (.whl) nor an sdist",
    ),
    ("unparsable wheel name", {"filename": "demo.whl"}, 400, "is not a valid wheel filename"),
    (
        "path in filename",
        {"filename": "../demo-1.0.tar.gz"},
        400,
        "not a valid distribution filename",
    ),
    ("form name", {"fields": {"name": "other"}}, 400, "The form names project 'other'"),
    ("form version", {"fields": {"version": "2.0"}}, 400, "The form says version '2.0'"),
    ("unicode name", {"fields": {"name": "d\u00e9mo"}}, 400, "The form names project 'd\u00e9mo'"),
    ("non-latin-1 name", {"fields": {"name": "d\u2192mo"}}, 400, "The form names project 'd?mo'"),
    ("form version junk", {"fields": {"version": "junk"}}, 400, "The form says version 'junk'"),
    ("filetype", {"fields": {"filetype": "sdist"}}, 400, "The form says filetype 'sdist'"),
    (
        "metadata name",
        {"metadata": metadata_text("other", "1.0")},
        400,
        "names project 'demo' but its METADATA says 'other'",
    ),
    (
        "metadata version",
        {"metadata": metadata_text("demo", "1.0", metadata_version="3.0")},
        400,
        "Metadata-Version '3.0', which does not exist",
    ),
    ("not a zip", {"data": b"garbage"}, 400, "The wheel is not a valid zip archive."),
    ("escaping sdist", {"escaping": True}, 400, "escapes the archive"),
    ("no token", {"auth": None}, 401, "Authentication is missing"),
    ("wrong token", {"auth": "0" * 48}, 401, "invalid or expired"),
    ("read token", {"auth": "read"}, 403, "may not upload to channel 'team'"),
]


@pytest.mark.parametrize(
    ("case", "spec", "status", "says"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejections_say_why_and_leave_nothing(
    team: Channel, tmp_path: Path, case: str, spec: dict[str, Any], status: int, says: str
) -> None:
    (tmp_path / "first").mkdir()
    team.post(make_wheel(tmp_path / "first", "demo", "0.9"))
    before = team.listing()
    spec = dict(spec)
    wheel = make_wheel(tmp_path, "demo", "1.0", metadata=spec.pop("metadata", None))
    if spec.pop("escaping", False):
        spec["filename"], spec["data"] = _escaping_sdist(tmp_path)
    spec.setdefault("path", wheel)
    path = spec.pop("path")
    answer = team.post(path, status=status, **spec)
    assert says in reason(answer), reason(answer)
    assert says in answer.text or says.replace("?", "\u2192") in answer.text
    assert reason(answer).encode("latin-1")  # a status line twine can print
    assert answer.content_type == "text/plain"
    assert team.listing() == before


def test_too_large_is_413(storage: Storage, prefix: str, tmp_path: Path) -> None:
    team = Channel(storage, prefix, max_upload_size=2000)
    before = team.listing()
    answer = team.post(make_wheel(tmp_path, "demo", "1.0"), data=b"x" * 5000, status=413)
    assert "larger than this server's limit of 2000 bytes" in reason(answer)
    assert team.listing() == before


def test_forms_without_action_go_to_the_ecosystem_that_claims_them(
    storage: Storage, prefix: str
) -> None:
    """One owner parses the form once and hands it to the claiming ecosystem's handler,
    with the file spooled and seekable; the Python handler never sees it."""
    ChannelRegistry(storage).create("team")
    secret, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    seen: dict[str, Any] = {}

    class Other:
        name, upload_forms, targets = "other", ("'filetype=other' (curl)",), ()

        def claims(self, form: Any) -> bool:
            return form.get("filetype") == "other"

        def upload(self, upload: Upload) -> Response:
            stream = upload.files["content"].stream
            seen.update(filetype=upload.form["filetype"], data=stream.read())
            stream.seek(0)
            return Response("stored\n", status=201)

    python = PythonEcosystem(storage)
    inner = UploadMiddleware(lambda e, s: [], [python, Other()])  # type: ignore[list-item,arg-type,return-value]
    app = webtest.TestApp(
        mounted(
            TokenAuthMiddleware(
                ChannelMiddleware(inner, ChannelRegistry(storage)), TokenStore(storage)
            ),
            prefix,
        )
    )
    answer = app.post(
        f"{prefix}/team",
        {"filetype": "other"},
        upload_files=[("content", "pkg_1.0.tar.gz", b"R bytes")],
        headers={"X-Auth": secret},
        status=201,
    )
    assert answer.text == "stored\n"
    assert seen == {"filetype": "other", "data": b"R bytes"}
    refused = app.post(
        f"{prefix}/team", {"filetype": "else"}, headers={"X-Auth": secret}, status=400
    )
    assert "neither ':action=file_upload' (twine, uv publish) nor 'filetype=other'" in refused.text


def test_concurrent_uploads_through_the_app(storage: Storage, prefix: str, tmp_path: Path) -> None:
    team = Channel(storage, prefix)
    wheels = [make_wheel(tmp_path, "demo", f"1.{n}") for n in range(8)]
    same = make_sdist(tmp_path, "demo", "2.0")
    errors: list[BaseException] = []

    def upload(path: Path) -> None:
        try:
            Channel.post(_with_own_app(team, prefix), path)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=upload, args=(w,)) for w in wheels]
    threads += [threading.Thread(target=upload, args=(same,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    project = team.store.project(team.channel, "demo")
    assert project is not None
    assert sorted(f.filename for f in project.files) == sorted(p.name for p in [*wheels, same])
    beside = (".metadata", ".pkg-info")
    blobs = [k for k in team.listing() if "/blobs/" in k and not k.endswith(beside)]
    assert len(blobs) == 9


def _with_own_app(team: Channel, prefix: str) -> Channel:
    """A view of ``team`` with its own TestApp, since one TestApp is not thread-safe."""
    clone = object.__new__(Channel)
    clone.__dict__.update(team.__dict__)
    clone.app = test_app(team.storage, prefix)
    return clone
