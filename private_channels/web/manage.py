"""The pages that change things: upload, yank/unyank/delete, tokens, channels.

::

    class PagesMiddleware(BrowsePages, ManagePages): ...   # see pages.py

Every one is a form posted with the session's CSRF token from this site's own pages
(checked before any of these runs, or, for the upload, once its body is parsed), and
every one calls the management API (:class:`~..admin.Admin`), which says who may.  The
upload hands the file to the ecosystem's own upload handler with the fields twine or
curl would have sent (:attr:`~..core.ecosystem.Ecosystem.upload_kinds`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_options_header
from werkzeug.wrappers import Response

from ..admin import token_state
from ..auth import same_origin
from ..core.ecosystem import Upload, UploadKind
from ..core.manage import ACTIONS
from ..core.upload import parse_upload_form
from ..errors import ChannelHTTPError, http_error
from ..tokens import ALL_CHANNELS, Scope, Token, parse_duration
from . import html
from .html import h, join
from .page import Page, PageKit

if TYPE_CHECKING:
    from ..channels import Channel
    from ..core.ecosystem import Ecosystem

__all__ = ["ManagePages"]


class ManagePages(PageKit):
    """The pages with forms that change the channels, their files and the tokens."""

    def page_upload(self, page: Page, channel: str) -> Response:
        request = page.request
        found = self._channel(page, channel, Scope.WRITE)
        if request.method != "POST":
            return self._upload_form(page, found)
        if not same_origin(request.environ):
            raise http_error(403, "This form was sent from another site; use this site's pages.")
        content_type, options = parse_options_header(request.content_type or "")
        boundary = options.get("boundary", "").encode("latin-1", "replace")
        if content_type != "multipart/form-data" or not boundary:
            raise http_error(400, "The upload form must be sent as multipart/form-data.")
        try:
            with parse_upload_form(request.environ, boundary, self.limits) as (form, files):
                self._check_form(page, form)
                response = self._upload(page, found, form, files)
        except ChannelHTTPError as error:
            if error.code in (401, 403) and page.actor is None:
                raise
            return self._upload_form(page, found, problem=error.sentence, status=error.code or 400)
        message = response.get_data(as_text=True).strip()
        return self._back(page, page.url("upload", channel=found.name), message)

    def _kinds(self) -> list[tuple[Ecosystem, UploadKind]]:
        return [(e, kind) for e in self.admin.ecosystems for kind in e.upload_kinds]

    def _options(self) -> list[tuple[str, str]]:
        """The optional text fields of every kind: (form field, label), each once."""
        return list(dict(o for _, kind in self._kinds() for o in kind.options).items())

    def _upload(
        self, page: Page, channel: Channel, form: MultiDict[str, str], files: MultiDict[str, Any]
    ) -> Response:
        chosen = form.get("kind", "")
        for ecosystem, kind in self._kinds():
            if kind.id != chosen:
                continue
            fields: MultiDict[str, str] = MultiDict(kind.fields)
            # Every option the page offers goes on as filled in, whatever the kind, so
            # that the handler answers a misplaced one as it answers curl.
            for name, _ in self._options():
                value = form.get(name, "").strip()
                if value:
                    fields[name] = value
            # The same handler as twine's and curl's uploads: the same checks and answers.
            assert ecosystem.claims(fields), kind
            return ecosystem.upload(Upload(channel, page.actor, fields, files, self.limits))
        raise http_error(400, "Choose what kind of package the file is.")

    def _upload_form(
        self, page: Page, channel: Channel, *, problem: str = "", status: int = 200
    ) -> Response:
        kinds = self._kinds()
        choices = join(
            h(
                "<label><input type='radio' name='kind' value='{}' required{}> {}</label>",
                kind.id,
                h(" checked") if i == 0 else "",
                kind.label,
            )
            for i, (_, kind) in enumerate(kinds)
        )
        extra = join(
            h("<label>{} <input name='{}' maxlength='60'></label>", label, name)
            for name, label in self._options()
        )
        accept = ",".join(sorted({a for _, k in kinds for a in k.accept.split(",") if a}))
        body = h(
            "<p>Uploading here does what twine and curl do: the same checks, the same "
            "answers, the same storage. Channel <a href='{back}'>{channel}</a>.</p>"
            "<form method='post' action='{action}' enctype='multipart/form-data' "
            "class='stack'>{csrf}<fieldset><legend>Kind of file</legend>{choices}</fieldset>"
            "{extra}<label>File <input type='file' name='content' required accept='{accept}'>"
            "</label><button type='submit'>Upload</button></form>",
            back=page.url("channel", channel=channel.name),
            channel=channel.name,
            action=page.url("upload", channel=channel.name),
            csrf=page.csrf(),
            choices=choices,
            extra=extra,
            accept=accept,
        )
        return self._render(page, f"Upload to {channel.name}", body, status=status, problem=problem)

    def page_files(self, page: Page, channel: str) -> Response:
        request = page.request
        found = self._channel(page, channel, Scope.ADMIN)
        values = request.form if request.method == "POST" else request.args
        action = values.get("action", "")
        filename = values.get("filename", "")[:512]
        if action not in ACTIONS or not filename:
            raise http_error(400, "Name an action (yank, unyank, delete) and a file.")
        if request.method != "POST":
            if action != "delete":
                raise http_error(405, "Yank and unyank with the buttons of the package page.")
            body = h(
                "<p class='warning'>Deleting <strong>{file}</strong> removes its bytes for "
                "good{reuse}.</p><form method='post' action='{action}'>{csrf}"
                "<input type='hidden' name='action' value='delete'>"
                "<input type='hidden' name='filename' value='{file}'>"
                "<button type='submit' class='danger'>Delete {file}</button></form>"
                "<p>To keep it installable for those who pin it, yank it instead.</p>",
                file=filename,
                reuse=""
                if found.allow_reupload
                else "; its name cannot be uploaded again in this channel",
                action=page.url("files", channel=found.name),
                csrf=page.csrf(),
            )
            return self._render(page, f"Delete {filename}?", body)
        target, files = self.admin.change(
            page.actor,
            found.name,
            action,
            filename,
            reason=request.form.get("reason", ""),
        )
        past = {"yank": "Yanked", "unyank": "Unyanked", "delete": "Deleted"}[action]
        message = f"{past} {', '.join(files)}."
        ecosystem = self.admin.ecosystem(target.ecosystem)
        if ecosystem.package(found, target.key) is None:
            return self._back(page, page.url("channel", channel=found.name), message)
        url = page.url("package", channel=found.name, ecosystem=target.ecosystem, name=target.key)
        return self._back(page, url, message)

    def page_create_channel(self, page: Page) -> Response:
        form = page.request.form
        options = {key: form.get(key) == "on" for key in ("public", "allow_reupload")}
        channel = self.admin.create_channel(page.actor, form.get("name", "").strip(), **options)
        return self._back(
            page, page.url("channel", channel=channel.name), f"Created channel {channel.name}."
        )

    def page_delete_channel(self, page: Page, channel: str) -> Response:
        contents = self.admin.contents(page.actor, channel)
        if page.request.method == "POST":
            if page.request.form.get("confirm", "").strip() != contents.channel.name:
                raise http_error(400, "Type the channel's name to confirm that it goes.")
            self.admin.delete_channel(page.actor, channel)
            return self._back(page, page.url("home"), f"Deleted channel {channel}.")
        body = h(
            "<p class='warning'>{summary} Deleting it removes every file for good.</p>"
            "<form method='post' action='{action}' class='stack'>{csrf}"
            "<label>Type <strong>{name}</strong> to confirm <input name='confirm' required "
            "autocomplete='off'></label>"
            "<button type='submit' class='danger'>Delete channel {name}</button></form>"
            "<p><a href='{back}'>Keep it</a></p>",
            summary=contents.describe(),
            action=page.url("delete_channel", channel=channel),
            csrf=page.csrf(),
            name=contents.channel.name,
            back=page.url("channel", channel=channel),
        )
        return self._render(page, f"Delete channel {channel}?", body)

    def page_tokens(self, page: Page) -> Response:
        created: tuple[str, Token] | None = None
        if page.request.method == "POST":
            created = self._create_token(page)
        tokens = self.admin.list_tokens(page.actor)
        assert page.actor is not None  # list_tokens refused anonymous callers
        rows = [
            h(
                "<tr><td><code>{id}</code>{me}</td><td>{channels}</td><td>{scope}</td>"
                "<td>{note}</td><td>{created}</td><td>{expires}</td><td>{used}</td>"
                "<td>{state}</td><td>{revoke}</td></tr>",
                id=token.id,
                me=" (this session)" if token.id == page.actor.id else "",
                channels=", ".join(sorted(token.channels)),
                scope=str(token.scope),
                note=token.note,
                created=html.date(token.created),
                expires=html.date(token.expires),
                used=html.date(token.last_used, never="not yet"),
                state=token_state(token),
                revoke=""
                if token.revoked
                else h(
                    "<form method='post' action='{}' class='inline'>{}"
                    "<button type='submit'>Revoke</button></form>",
                    page.url("revoke_token", token_id=token.id),
                    page.csrf(),
                ),
            )
            for token in tokens
        ]
        shown: Markup | str = ""
        if created is not None:
            secret, token = created
            shown = h(
                "<section class='secret'><h2>Token {id} was created</h2>"
                "<p>Copy it now: it is shown only this once, and nothing keeps it.</p>"
                "<pre><code id='new-token'>{secret}</code></pre></section>",
                id=token.id,
                secret=secret,
            )
        channels = self.admin.token_channels(page.actor)
        scopes = [s for s in Scope if s <= page.actor.scope]
        body = h(
            "{shown}{table}<h2>Create a token</h2>"
            "<form method='post' action='{action}' class='stack'>{csrf}"
            "<fieldset><legend>Channels</legend>{channels}</fieldset>"
            "<label>Scope <select name='scope'>{scopes}</select></label>"
            "<label>Expires after <input name='expires' placeholder='30d' maxlength='12'>"
            "</label><p class='note'>Like 90s, 30m, 12h, 30d; empty: never{must}.</p>"
            "<label>Note <input name='note' maxlength='200'></label>"
            "<button type='submit'>Create token</button></form>",
            shown=shown,
            table=html.table(
                ("Id", "Channels", "Scope", "Note", "Created", "Expires", "Last used", "State", ""),
                rows,
            )
            if rows
            else h("<p class='none'>No tokens.</p>"),
            action=page.url("tokens"),
            csrf=page.csrf(),
            channels=join(
                h(
                    "<label><input type='checkbox' name='channel' value='{}'> {}</label>",
                    c,
                    "* (every channel, those created later too)" if c == ALL_CHANNELS else c,
                )
                for c in channels
            ),
            scopes=join(h("<option>{}</option>", str(s)) for s in scopes),
            must=" (required: this session's token expires)" if page.actor.expires else "",
        )
        return self._render(page, "Tokens", body, status=201 if created else 200)

    def _create_token(self, page: Page) -> tuple[str, Token]:
        form = page.request.form
        expires = form.get("expires", "").strip()
        try:
            scope = Scope.parse(form.get("scope", ""))
            expires_in = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise http_error(400, f"{str(exc).capitalize()}.") from None
        return self.admin.create_token(
            page.actor,
            form.getlist("channel"),
            scope,
            expires_in=expires_in,
            note=form.get("note", "").strip(),
        )

    def page_revoke_token(self, page: Page, token_id: str) -> Response:
        self.admin.revoke_token(page.actor, token_id)
        if page.actor is not None and page.actor.id == token_id:
            response = self._back(
                page,
                page.url("login"),
                f"Revoked token {token_id}; this session used it and has ended.",
            )
            return response
        return self._back(page, page.url("tokens"), f"Revoked token {token_id}.")
