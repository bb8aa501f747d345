"""A site for the tests of the pages and the HTTP API: channels, tokens, browsers.

``Site(storage, prefix)`` makes a private channel ``team``, a public channel ``open`` and
a private channel ``other``, tokens of every kind, and the app mounted at ``prefix``;
``site.browser()`` is a client with its own cookies that asks for HTML as browsers do,
``site.sign_in(secret)`` one signed in through the form.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import webtest

from private_channels import make_app
from private_channels.admin import OPERATOR, Admin
from private_channels.app import ecosystems
from private_channels.storage import Storage
from private_channels.tokens import Scope

from .support import mounted

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
PREFIXES = ["/api/repo", "/deep/er/mount"]


class Site:
    def __init__(self, storage: Storage, prefix: str = "/api/repo", **options: Any) -> None:
        self.storage = storage
        self.prefix = prefix
        self.admin = Admin(storage, ecosystems(storage))
        for name, public in (("team", False), ("open", True), ("other", False)):
            self.admin.create_channel(OPERATOR, name, public=public)
        self.secrets: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        for who, channels, scope in (
            ("root", ["*"], Scope.ADMIN),
            ("team_admin", ["team"], Scope.ADMIN),
            ("team_write", ["team"], Scope.WRITE),
            ("team_read", ["team"], Scope.READ),
            ("other_write", ["other"], Scope.WRITE),
        ):
            secret, token = self.admin.create_token(OPERATOR, channels, scope, note=who)
            self.secrets[who], self.ids[who] = secret, token.id
        self.wsgi = mounted(make_app(storage, **options), prefix)
        self.app = webtest.TestApp(self.wsgi)

    def url(self, path: str = "") -> str:
        return f"{self.prefix}/{path}"

    def browser(self, *, https: bool = False) -> webtest.TestApp:
        environ = {"HTTP_ACCEPT": BROWSER_ACCEPT}
        if https:
            environ.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
        return webtest.TestApp(self.wsgi, extra_environ=environ)

    def sign_in(self, who: str, browser: webtest.TestApp | None = None) -> webtest.TestApp:
        browser = browser or self.browser()
        page = browser.get(self.url("-/login"))
        form = page.forms[0]
        form["token"] = self.secrets[who]
        response = form.submit()
        assert response.status_int == 303, response.text
        return browser

    def api(
        self,
        method: str,
        path: str,
        who: str | None = "root",
        body: Any = None,
        status: int | str = "*",
        **headers: str,
    ) -> webtest.TestResponse:
        if who is not None:
            headers.setdefault("X-Auth", self.secrets[who])
        kwargs: dict[str, Any] = {"headers": headers, "status": status, "expect_errors": True}
        url = self.url(f"-/api/{path}")
        if body is None:
            return self.app.request(url, method=method, **kwargs)
        return self.app.request(
            url,
            method=method,
            body=json.dumps(body).encode(),
            content_type="application/json",
            **kwargs,
        )

    def upload_python(self, path: Any, channel: str = "team", who: str = "team_write") -> None:
        content = path.read_bytes()
        self.app.post(
            self.url(channel),
            {
                ":action": "file_upload",
                "protocol_version": "1",
                "sha256_digest": hashlib.sha256(content).hexdigest(),
            },
            upload_files=[("content", path.name, content)],
            headers={"X-Auth": self.secrets[who]},
        )

    def upload_r(
        self,
        data: bytes,
        filename: str,
        channel: str = "team",
        who: str = "team_write",
        filetype: str = "cran_source_package",
    ) -> None:
        self.app.post(
            self.url(channel),
            {"filetype": filetype},
            upload_files=[("content", filename, data)],
            headers={"X-Auth": self.secrets[who]},
        )


__all__ = ["BROWSER_ACCEPT", "PIP_ACCEPT", "PREFIXES", "Site"]
