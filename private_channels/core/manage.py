"""Yank, unyank and delete files of any ecosystem: the admin HTTP API and its Python API.

::

    app = ManageMiddleware(app, ecosystems)               # below ChannelMiddleware

    $ curl -H "X-Auth: ADMIN_TOKEN" -d filename=demo-1.0.tar.gz -d reason="Broken" \\
           https://host/api/repo/team/-/yank

    change_files(ecosystems, channel, "yank", "demo==1.0", reason="Broken")   # the CLI's way

Under a channel it owns ``POST /-/yank``, ``/-/unyank`` and ``/-/delete`` (admin scope),
with a form naming a file (``filename``) or a release (``project`` and ``version``).
Which ecosystem the target belongs to is for the ecosystems to say
(:meth:`~.ecosystem.Ecosystem.find`); each change is one compare-and-swap of one
document, so every server process shows it on its next request.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, get_args

from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from ..auth import authorize, refuse_other_sites
from ..errors import http_error
from ..routing import current_channel
from ..storage import InvalidKeyError
from ..tokens import Scope
from .ecosystem import Action, Target
from .limits import Limits

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..channels import Channel
    from .ecosystem import Ecosystem

__all__ = [
    "ACTIONS",
    "MAX_REASON_LENGTH",
    "ManageMiddleware",
    "change_files",
    "clean_reason",
    "find_target",
]

ACTIONS: tuple[Action, ...] = get_args(Action)
MAX_TARGET_LENGTH = 512
MAX_REASON_LENGTH = 1000


def find_target(ecosystems: Sequence[Ecosystem], channel: Channel, text: str) -> Target:
    """The ecosystem's target that ``text`` (a filename or ``NAME==VERSION``) names.

    When several ecosystems read it (``abc==1.0`` is a Python release and an R one
    alike), the one whose channel holds a package of that name wins.  Raises
    :class:`ValueError` with one sentence when no ecosystem knows it, or when more
    than one holds such a package.
    """
    text = text.strip()
    if len(text) > MAX_TARGET_LENGTH:
        raise ValueError(f"The target is longer than {MAX_TARGET_LENGTH} characters.")
    if "/" in text or "\\" in text:
        raise ValueError(f"{text!r} is a path; give the file's name alone.")
    found = [t for ecosystem in ecosystems if (t := ecosystem.find(channel, text)) is not None]
    if len(found) > 1:
        by_name = {ecosystem.name: ecosystem for ecosystem in ecosystems}
        held = [t for t in found if by_name[t.ecosystem].package(channel, t.key) is not None]
        if len(held) > 1:
            raise ValueError(
                f"{text!r} names packages of {' and '.join(t.ecosystem for t in held)} alike; "
                "name the file instead."
            )
        found = held or found
    if found:
        return found[0]
    forms = " nor ".join(form for ecosystem in ecosystems for form in ecosystem.targets)
    raise ValueError(f"{text!r} is neither {forms}.")


def clean_reason(reason: str) -> str:
    """A yank reason as indexes show it: one line, at most :data:`MAX_REASON_LENGTH`
    characters (else :class:`ValueError`)."""
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"The reason is longer than {MAX_REASON_LENGTH} characters.")
    return reason


def change_files(
    ecosystems: Sequence[Ecosystem],
    channel: Channel,
    action: Action,
    text: str,
    *,
    reason: str = "",
) -> tuple[Target, list[str]]:
    """Yank, unyank or delete what ``text`` names; the target and the filenames touched.

    Raises :class:`ValueError` (a target no ecosystem knows, a reason too long) and
    :class:`LookupError` (no such file in the channel), each with one sentence.
    """
    reason = clean_reason(reason)
    target = find_target(ecosystems, channel, text)
    ecosystem = next(e for e in ecosystems if e.name == target.ecosystem)
    try:
        return target, ecosystem.change(channel, target, action, reason)
    except InvalidKeyError:
        # A name that fits no storage key: no upload could have stored it.
        raise LookupError(f"Channel {channel.name!r} has no file {str(target)!r}.") from None


class ManageMiddleware:
    """Serve ``POST /-/yank|unyank|delete`` under a channel; pass on everything else."""

    def __init__(
        self,
        app: WSGIApplication,
        ecosystems: Sequence[Ecosystem],
        *,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.ecosystems = tuple(ecosystems)
        self.limits = limits or Limits()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        action = next((a for a in ACTIONS if path == f"/-/{a}"), None)
        if action is None:
            return self.app(environ, start_response)
        try:
            response: WSGIApplication = self.manage(environ, action)
        except HTTPException as error:
            response = error
        return response(environ, start_response)

    def manage(self, environ: WSGIEnvironment, action: Action) -> Response:
        channel = current_channel(environ)
        authorize(environ, channel, Scope.ADMIN)
        if environ.get("REQUEST_METHOD") != "POST":
            raise http_error(
                405, f"Send a POST with a form to {action} files.", headers=[("Allow", "POST")]
            )
        refuse_other_sites(environ)
        form = self._form(environ)
        filename, project, version = (form.get(k, "") for k in ("filename", "project", "version"))
        if filename:
            text = filename
        elif project and version:
            text = f"{project}=={version}"
        else:
            raise http_error(
                400, "Name a file with 'filename', or a release with 'project' and 'version'."
            )
        try:
            target, files = change_files(
                self.ecosystems, channel, action, text, reason=form.get("reason", "")
            )
        except ValueError as exc:
            raise http_error(400, str(exc)) from None
        except LookupError as exc:
            raise http_error(404, str(exc.args[0] if exc.args else exc)) from None
        body = {"action": action, "project": target.key, "files": files}
        return Response(json.dumps(body) + "\n", mimetype="application/json")

    def _form(self, environ: WSGIEnvironment) -> dict[str, str]:
        request = FormRequest(environ)
        limit = self.limits.max_admin_body
        request.max_content_length = limit
        request.max_form_memory_size = limit
        try:
            return {k: v for k, v in request.form.items()}
        except RequestEntityTooLarge:
            raise http_error(413, f"The form is larger than {limit} bytes.") from None
        except BadRequest:
            raise http_error(400, "The body is not a valid form.") from None
        finally:
            request.close()


class FormRequest(Request):
    """A form whose body is bounded (by ``max_admin_body``): a file part goes to memory,
    never to a temporary file that a body cut short would leave open.  For the
    management forms and the web pages."""

    def _get_file_stream(self, *args: Any, **kwargs: Any) -> IO[bytes]:
        return io.BytesIO()
