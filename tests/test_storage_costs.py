"""What a request costs in object-store requests, on S3 (SeaweedFS), cold and warm.

Every S3 request the app's client sends is counted by operation with a botocore event
hook; the bounds below are what docs/storage.md reports.  "Cold" is a fresh process (a
new app: no cached pages, documents or tokens), "warm" the same request again in the
same process.  A page view must stay a small constant: a ``stat`` validating the cached
page, never a listing of the channel, however many projects or files it holds.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest

from private_channels import ChannelRegistry, Scope, TokenStore
from private_channels.storage import FileSystemStorage

from .packages import make_wheel
from .s3server import Requests, SeaweedFS
from .support import test_app
from .test_cran_description import source_package

PREFIX = "/api/repo"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class Deployment:
    """One S3 storage with a channel, a write token, some packages, and app processes."""

    def __init__(self, storage: Any, tmp: Path) -> None:
        self.storage = storage
        self.tmp = tmp
        ChannelRegistry(storage).create("team")
        self.token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
        self.requests = Requests(storage.client)
        self.app = self.process()

    def process(self) -> webtest.TestApp:
        """A fresh app, as a newly started process has: every cache empty."""
        return test_app(self.storage, PREFIX, token_cache_ttl=3600)

    def get(self, app: webtest.TestApp, path: str, **headers: str) -> webtest.TestResponse:
        return app.get(f"{PREFIX}/team{path}", headers={"X-Auth": self.token, **headers})

    def upload_wheel(self, app: webtest.TestApp, name: str, version: str) -> None:
        wheel = make_wheel(self.tmp, name, version)
        content = wheel.read_bytes()
        form = {
            ":action": "file_upload",
            "protocol_version": "1",
            "filetype": "bdist_wheel",
            "pyversion": "py3",
            "metadata_version": "2.1",
            "name": name,
            "version": version,
            "sha256_digest": hashlib.sha256(content).hexdigest(),
        }
        app.post(
            f"{PREFIX}/team",
            list(form.items()),
            upload_files=[("content", wheel.name, content)],
            headers={"X-Auth": self.token},
            content_type="multipart/form-data",
        )

    def upload_r(self, app: webtest.TestApp, name: str, version: str) -> None:
        app.post(
            f"{PREFIX}/team",
            [("filetype", "cran_source_package")],
            upload_files=[("content", f"{name}_{version}.tar.gz", source_package(name, version))],
            headers={"X-Auth": self.token},
            content_type="multipart/form-data",
        )


@pytest.fixture
def deployment(seaweedfs: SeaweedFS, tmp_path: Path) -> Iterator[Deployment]:
    storage = seaweedfs.storage()
    try:
        yield Deployment(storage, tmp_path)
    finally:
        storage.close()


READS = [
    ("project page", "/simple/alpha/", {}),
    ("project page, JSON", "/simple/alpha/", {"Accept": JSON_TYPE}),
    ("root page", "/simple/", {}),
    ("PACKAGES.gz", "/src/contrib/PACKAGES.gz", {}),
    ("PACKAGES", "/src/contrib/PACKAGES", {}),
    ("PACKAGES.rds", "/src/contrib/PACKAGES.rds", {}),
    ("Meta/archive.rds", "/src/contrib/Meta/archive.rds", {}),
]
# Per request, whatever the process has cached: 1 HeadObject of the channel record, which
# validates the record kept from an earlier request (so a deleted or changed channel is
# seen at once everywhere), and 1 HeadObject of the one document the answer derives
# from, which validates the cached rendering.
WARM = {"HeadObject": 2}
# A fresh process also reads the channel record, learns the token-hashing key (one read:
# it exists already), reads the token record, and reads and renders the document.
# After a change through any process, the HeadObject sees a new ETag: one more read.
CHANGED = {"GetObject": 1, "HeadObject": 2}
COLD = {"GetObject": 4, "HeadObject": 2}


def test_page_views_cost_a_small_constant(deployment: Deployment) -> None:
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")
    d.upload_r(d.app, "abc", "1.0")
    for label, path, headers in READS:
        cold = d.process()
        d.requests.take()
        response = d.get(cold, path, **headers)
        assert d.requests.take() == COLD, label
        assert d.get(cold, path, **headers).body == response.body
        assert d.requests.take() == WARM, label
        # A client revalidating its copy (pip's cache, R's) costs the same, and gets a 304.
        again = d.get(cold, path, **headers, **{"If-None-Match": response.headers["ETag"]})
        assert again.status_int == 304
        assert d.requests.take() == WARM, label


def test_page_views_do_not_grow_with_the_channel(deployment: Deployment) -> None:
    d = deployment
    for n in range(12):
        d.upload_wheel(d.app, f"proj{n}", "1.0")
        d.upload_r(d.app, f"pkg{n}", "1.0")
    d.upload_wheel(d.app, "alpha", "1.0")
    d.upload_r(d.app, "abc", "1.0")
    for label, path, headers in READS:
        d.get(d.app, path, **headers)
        d.requests.take()
        d.get(d.app, path, **headers)
        assert d.requests.take() == WARM, label


def test_a_change_through_another_process_costs_one_read(deployment: Deployment) -> None:
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")
    d.upload_r(d.app, "abc", "1.0")
    other = d.process()
    for _label, path, headers in READS:
        d.get(d.app, path, **headers)
    d.upload_wheel(other, "alpha", "1.1")
    d.upload_wheel(other, "gamma", "1.0")
    d.upload_r(other, "abd", "1.0")
    d.upload_r(other, "abc", "1.1")  # archives abc 1.0
    d.requests.take()
    news = {
        "project": b"alpha-1.1",
        "root": b"gamma",
        "PACKAGES": b"abd",
        "Meta": b"abc/abc_1.0.tar.gz",
    }
    for label, path, headers in READS:
        response = d.get(d.app, path, **headers)
        # The HeadObject sees a new ETag: the document is read again and re-rendered
        # (for each serialization of a Python page; once for the three PACKAGES files,
        # which render from one parsed snapshot of the directory's document).
        changed = label not in ("PACKAGES", "PACKAGES.rds", "Meta/archive.rds")
        assert d.requests.take() == (CHANGED if changed else WARM), label
        body = response.body
        body = gzip.decompress(body) if body.startswith(b"\x1f\x8b") else body
        body = lzma.decompress(body) if body.startswith(b"\xfd7zXZ") else body
        assert next(v for k, v in news.items() if label.startswith(k)) in body, label


def test_downloads_cost_the_file_and_a_validation(deployment: Deployment) -> None:
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")
    d.upload_r(d.app, "abc", "1.0")
    page = d.get(d.app, "/simple/alpha/", Accept=JSON_TYPE).json
    wheel = "/files/" + page["files"][0]["url"].split("/files/", 1)[1]
    for path in (wheel, "/src/contrib/abc_1.0.tar.gz"):
        d.get(d.app, path)
        d.requests.take()
        d.get(d.app, path)
        # The channel's and the index document's validations, the file itself.
        assert d.requests.take() == {"GetObject": 1, "HeadObject": 2}, path
    # After uploads through another process, the changed document is read once more.
    other = d.process()
    d.upload_wheel(other, "alpha", "1.1")
    d.upload_r(other, "abd", "1.0")
    d.requests.take()
    for path in (wheel, "/src/contrib/abc_1.0.tar.gz"):
        d.get(d.app, path)
        assert d.requests.take() == {"GetObject": 2, "HeadObject": 2}, path


def test_a_download_after_its_page_reads_no_document(deployment: Deployment) -> None:
    """pip reads a project's page, then downloads from it: the page's read of the
    project document also gives the download what it checks its file against."""
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")
    cold = d.process()
    page = d.get(cold, "/simple/alpha/", Accept=JSON_TYPE).json
    wheel = "/files/" + page["files"][0]["url"].split("/files/", 1)[1]
    d.requests.take()
    d.get(cold, wheel)
    # The channel's and the document's validations, the file: as when warm.
    assert d.requests.take() == {"GetObject": 1, "HeadObject": 2}


def test_uploads_cost_a_bounded_number_of_requests(deployment: Deployment) -> None:
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")  # the first upload of the process warms the token
    d.requests.take()
    d.upload_wheel(d.app, "alpha", "1.1")
    existing = d.requests.take()
    d.upload_wheel(d.app, "beta", "1.0")
    new = d.requests.take()
    d.upload_r(d.app, "abc", "1.0")
    r_upload = d.requests.take()
    # Blobs are created (PutObject with If-None-Match, HeadObject for the new version);
    # documents are compare-and-swapped; nothing is listed.
    # A known project's name is checked in projects.json by its ETag, not read; so is
    # a document this process committed last (its version kept: a HeadObject, no Get);
    # any other document is read at once (a GetObject, a 404 for a new one).
    assert existing == {"GetObject": 1, "PutObject": 3, "HeadObject": 6}
    assert new == {"GetObject": 2, "PutObject": 4, "HeadObject": 6}
    # The first R upload of the process also reads what the storage says of its blobs
    # (registry/format.json: ChannelStore.flat_blobs), once.
    assert r_upload == {"GetObject": 2, "PutObject": 2, "HeadObject": 3}
    # Committed by another process since (another app on the same bucket): read again.
    other = test_app(d.storage, PREFIX, token_cache_ttl=3600)
    d.upload_wheel(other, "alpha", "1.2")
    d.requests.take()
    d.upload_wheel(d.app, "alpha", "1.3")
    assert d.requests.take() == {"GetObject": 2, "PutObject": 3, "HeadObject": 6}
    page = d.get(d.app, "/simple/alpha/", Accept=JSON_TYPE).json
    assert [f["filename"] for f in page["files"]] == [
        f"alpha-{v}-py3-none-any.whl" for v in ("1.0", "1.1", "1.2", "1.3")
    ]


def test_a_redirected_download_costs_no_read_of_the_file(deployment: Deployment) -> None:
    d = deployment
    d.upload_wheel(d.app, "alpha", "1.0")
    d.upload_r(d.app, "abc", "1.0")
    app = test_app(d.storage, PREFIX, token_cache_ttl=3600, redirect_downloads=60)
    page = d.get(app, "/simple/alpha/", Accept=JSON_TYPE).json
    wheel = "/files/" + page["files"][0]["url"].split("/files/", 1)[1]
    for path in (wheel, "/src/contrib/abc_1.0.tar.gz"):
        d.get(app, path)
        d.requests.take()
        response = d.get(app, path)
        assert response.status_int == 302
        assert response.headers["Location"].startswith(d.storage.client.meta.endpoint_url)
        assert "no-store" in response.headers["Cache-Control"]
        # The channel and the document's validation; presigning sends no request.
        assert d.requests.take() == WARM, path


def test_a_storage_that_cannot_presign_serves_the_file(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "data")
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    app = test_app(storage, PREFIX, redirect_downloads=60)
    upload = source_package("abc", "1.0")
    app.post(
        f"{PREFIX}/team",
        [("filetype", "cran_source_package")],
        upload_files=[("content", "abc_1.0.tar.gz", upload)],
        headers={"X-Auth": token},
        content_type="multipart/form-data",
    )
    response = app.get(f"{PREFIX}/team/src/contrib/abc_1.0.tar.gz", headers={"X-Auth": token})
    assert response.status_int == 200 and response.body == upload
