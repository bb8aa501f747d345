"""The pages that show: the channel list, a channel with its packages, a package.

::

    class PagesMiddleware(BrowsePages, ManagePages): ...   # see pages.py

``P/`` lists the channels the identity may read (and, for an admin for ``*``, a form
that creates one); ``P/<CHANNEL>/`` the channel's packages of every ecosystem, with a
filter, and how to set up each client; ``P/<CHANNEL>/-/packages/<ECOSYSTEM>/<NAME>/``
a package: how to install it, its versions and files, its description, and for the
channel's admins the yank, unyank and delete buttons.  Everything comes from the
management API's listings (:meth:`~..admin.Admin.packages`), which are the ecosystems'.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from markupsafe import Markup
from werkzeug.wrappers import Response

from ..admin import Admin
from ..core.ecosystem import Description, PackageDetail
from ..tokens import Scope
from . import html
from .html import h, join
from .page import Page, PageKit

if TYPE_CHECKING:
    from ..channels import Channel

__all__ = ["BrowsePages"]


class BrowsePages(PageKit):
    """The pages that show channels and packages."""

    def page_home(self, page: Page) -> Response:
        channels = self.admin.channels(page.actor)
        manages = Admin.manages_instance(page.actor)
        rows = []
        for channel in channels:
            action: Markup | str = ""
            if manages:
                action = h(
                    "<a href='{}'>Delete…</a>", page.url("delete_channel", channel=channel.name)
                )
            rows.append(
                h(
                    "<tr data-name='{name}'><td><a href='{url}'>{name}</a></td><td>{kind}</td>"
                    "<td>{created}</td><td>{action}</td></tr>",
                    name=channel.name,
                    url=page.url("channel", channel=channel.name),
                    kind="public" if channel.public else "private",
                    created=html.date(channel.created),
                    action=action,
                )
            )
        body = (
            html.table(("Channel", "Visibility", "Created", ""), rows)
            if rows
            else h(
                "<p class='none'>{}</p>",
                "No channel you may read."
                if page.actor
                else "No public channel; sign in to see yours.",
            )
        )
        if manages:
            body += h(
                "<h2>Create a channel</h2><form method='post' action='{}' class='stack'>{}"
                "<label>Name <input name='name' required pattern='[A-Za-z0-9_][A-Za-z0-9._\\-]*' "
                "maxlength='64'></label>"
                "<label><input type='checkbox' name='public' value='on'> Public: anyone may "
                "read it</label>"
                "<label><input type='checkbox' name='allow_reupload' value='on'> A deleted "
                "filename may be uploaded again</label>"
                "<button type='submit'>Create</button></form>",
                page.url("create_channel"),
                page.csrf(),
            )
        return self._render(page, "Channels", body)

    def page_channel(self, page: Page, channel: str) -> Response:
        found = self._channel(page, channel)
        query = page.request.args.get("q", "")[:100]
        packages = self.admin.packages(page.actor, found.name)
        sections = []
        for ecosystem, listed in packages.items():
            shown = [p for p in listed if query.casefold() in p.name.casefold()]
            url = page.urls_of("package", "name", channel=found.name, ecosystem=ecosystem)
            rows = [
                html.fill(
                    "<tr data-name='%(name)s'><td><a href='%(url)s'>%(name)s</a></td>"
                    "<td>%(latest)s</td><td>%(count)s</td></tr>",
                    name=p.name,
                    url=url(p.key),
                    latest=p.versions[-1] if p.versions else "",
                    count=len(p.versions),
                )
                for p in shown
            ]
            listing = (
                html.table(("Package", "Latest", "Versions"), rows, attrs=h(" class='filterable'"))
                if rows
                else h(
                    "<p class='none'>No {} packages{}.</p>",
                    ecosystem,
                    " match the filter" if query and listed else "",
                )
            )
            sections.append(h("<section><h2>{}</h2>{}</section>", ecosystem, listing))
        actions = []
        if self.admin.may(page.actor, found, Scope.WRITE):
            actions.append(
                h("<a href='{}'>Upload a package</a>", page.url("upload", channel=found.name))
            )
        if Admin.manages_instance(page.actor):
            actions.append(
                h(
                    "<a href='{}'>Delete this channel…</a>",
                    page.url("delete_channel", channel=found.name),
                )
            )
        setup = join(html.snippet(s) for s in self._snippets(page, found, None))
        body = h(
            "<p>{kind} channel, created {created}. {actions}</p>"
            "<form method='get' action='{here}' class='filter' role='search'>"
            "<label>Filter <input type='search' name='q' value='{query}' id='filter' "
            "placeholder='package name'></label> <button type='submit'>Filter</button></form>"
            "{sections}<h2>Set up your clients</h2>{where}"
            "<p class='note'>Every snippet uses a placeholder for your token: "
            "<code>$TOKEN</code> in a shell, <code>PRIVATE_CHANNELS_TOKEN</code> in R's "
            "environment. No page shows a token.</p>{setup}",
            kind="A public" if found.public else "A private",
            created=html.date(found.created),
            actions=join(actions, " · "),
            here=page.url("channel", channel=found.name),
            query=query,
            sections=join(sections),
            where=self._where(page, found),
            setup=setup,
        )
        return self._render(page, found.name, body)

    def page_package(self, page: Page, channel: str, ecosystem: str, name: str) -> Response:
        found = self._channel(page, channel)
        version = page.request.args.get("version") or None
        detail = self.admin.package(page.actor, found.name, ecosystem, name, version)
        admin = self.admin.may(page.actor, found, Scope.ADMIN)
        body = self._package_body(page, found, detail, admin)
        return self._render(page, f"{detail.package.name} {detail.version}", body)

    def _package_body(
        self, page: Page, channel: Channel, detail: PackageDetail, admin: bool
    ) -> Markup:
        package = detail.package
        here = page.url(
            "package", channel=channel.name, ecosystem=package.ecosystem, name=package.key
        )
        channel_url = page.url("channel", channel=channel.name)
        yanked = {f.version for f in detail.files if f.yanked is not None}
        versions = join(
            (
                h(
                    "<li><a href='{}'{}>{}</a>{}</li>",
                    f"{here}?version={quote(v)}",
                    h(" aria-current='page'") if v == detail.version else "",
                    v,
                    " (yanked)" if v in yanked else "",
                )
                for v in reversed(package.versions)
            ),
        )
        rows = []
        for item in detail.files:
            link = (
                h("<a href='{}'>{}</a>", f"{channel_url}{item.url}", item.filename)
                if item.url is not None
                else h("{}", item.filename)
            )
            state = (
                ""
                if item.yanked is None
                else h("yanked{}", f": {item.yanked}" if item.yanked else "")
            )
            actions: Markup | str = ""
            if admin:
                actions = self._file_actions(page, channel, item.filename, item.yanked is not None)
            rows.append(
                h(
                    "<tr{cls}><td>{link}</td><td>{version}</td><td>{size}</td>"
                    "<td><code class='sha' title='{sha}'>{sha}</code></td>"
                    "<td>{time}</td><td>{state}</td>"
                    "<td>{details}</td><td>{actions}</td></tr>",
                    cls=h(" class='yanked'") if item.yanked is not None else "",
                    link=link,
                    version=item.version,
                    size=html.size(item.size),
                    sha=item.sha256,
                    time=html.date(item.upload_time),
                    state=state,
                    details=html.file_details(item),
                    actions=actions,
                )
            )
        about = join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in detail.about)
        snippets = self._snippets(page, channel, package)
        return h(
            "<p class='summary'>{summary}</p><p>A {ecosystem} package in channel "
            "<a href='{channel_url}'>{channel}</a>.</p>{where}"
            "<h2>Install</h2>{install}<details><summary>Other clients, and uploading</summary>"
            "{snippets}</details>"
            "<h2>Versions</h2><ul class='versions'>{versions}</ul>"
            "<h2>Files</h2>{files}"
            "{about}<h2>Description of {version}</h2>{description}",
            summary=detail.summary,
            ecosystem=package.ecosystem,
            channel_url=channel_url,
            channel=channel.name,
            where=self._where(page, channel),
            install=html.snippet(snippets[0]),
            snippets=join(html.snippet(s) for s in snippets[1:]),
            versions=versions,
            files=html.table(
                ("File", "Version", "Size", "sha256", "Uploaded", "Yanked", "Details", ""), rows
            ),
            about=h("<h2>About {}</h2><dl>{}</dl>", detail.version, about) if detail.about else "",
            version=detail.version,
            description=self._description(detail.description),
        )

    def _description(self, description: Description | None) -> Markup:
        if description is None:
            return html.render_description(None)
        seed = f"{description.content_type}\0{description.text}".encode()
        key = ("description", hashlib.sha256(seed).hexdigest())

        def make() -> tuple[Markup, int]:
            rendered = html.render_description(description)
            return rendered, len(rendered)

        rendered: Markup = self.descriptions.get_or_make(key, "-", make)
        return rendered

    def _file_actions(self, page: Page, channel: Channel, filename: str, yanked: bool) -> Markup:
        action = page.url("files", channel=channel.name)
        if yanked:
            change = h(
                "<form method='post' action='{}' class='inline'>{}"
                "<input type='hidden' name='action' value='unyank'>"
                "<input type='hidden' name='filename' value='{}'>"
                "<button type='submit'>Unyank</button></form>",
                action,
                page.csrf(),
                filename,
            )
        else:
            change = h(
                "<form method='post' action='{}' class='inline'>{}"
                "<input type='hidden' name='action' value='yank'>"
                "<input type='hidden' name='filename' value='{}'>"
                "<input name='reason' placeholder='reason' maxlength='1000' "
                "aria-label='Reason for yanking {}'> <button type='submit'>Yank</button></form>",
                action,
                page.csrf(),
                filename,
                filename,
            )
        delete = h(
            "<a href='{}'>Delete…</a>",
            page.url("files", channel=channel.name, action="delete", filename=filename),
        )
        return change + delete
