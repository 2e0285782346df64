"""The blob host: where GitHub's download redirects (job logs) point.

GitHub answers ``GET .../actions/jobs/{id}/logs`` with a 302 to a signed URL
on another host (a blob store). The twin serves those from the same server
under another host name, ``localhost:PORT`` (the API is on ``127.0.0.1:PORT``),
outside ``/api/v3`` and without spec validation. Like S3, the blob host
refuses a request that carries an ``Authorization`` header (400): a client
must not forward the installation token there. Files stream from disk.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import GitHubTwin

BLOB_HOST = "localhost"
PREFIX = "/_blobs/"
AUTH_REFUSED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
    "<Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    "Signature query string parameter or the Authorization header should be specified</Message>"
    "<ArgumentName>Authorization</ArgumentName></Error>"
)
NO_SUCH_KEY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    "<Message>The specified key does not exist.</Message></Error>"
)


class Blobs:
    """Signed-looking URLs for files on disk; every download recorded."""

    def __init__(self, twin: GitHubTwin) -> None:
        self.twin = twin
        self.files: dict[str, Path] = {}
        self.downloads: list[dict[str, object]] = []

    def url_for(self, path: Path) -> str:
        """A fresh download URL for ``path`` (valid while the twin runs)."""
        key = secrets.token_urlsafe(24)
        self.files[key] = path
        return f"http://{BLOB_HOST}:{self.twin.port}{PREFIX}{key}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        authorized = "Authorization" in request.headers
        record: dict[str, object] = {"path": request.path, "authorization": authorized, "status": 0}
        self.downloads.append(record)

        def xml(status: int, text: str) -> web.Response:
            record["status"] = status
            return web.Response(status=status, text=text, content_type="application/xml")

        path = self.files.get(request.match_info["key"])
        if request.host.rsplit(":", 1)[0] != BLOB_HOST or path is None or not path.is_file():
            return xml(404, NO_SUCH_KEY)
        if authorized:
            return xml(400, AUTH_REFUSED)
        record["status"] = 200
        return web.FileResponse(path, headers={"Content-Type": "text/plain; charset=utf-8"}, chunk_size=256 * 1024)
