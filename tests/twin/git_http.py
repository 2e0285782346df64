"""Git over smart HTTP, served by ``git http-backend`` run as a CGI program."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from aiohttp import web

from . import gitrepo
from .auth import BadCredentials, parse_basic
from .permissions import holds

if TYPE_CHECKING:
    from .server import GitHubTwin

log = logging.getLogger(__name__)
SERVICES = ("info/refs", "git-upload-pack", "git-receive-pack")
GZIP_MAGIC = b"\x1f\x8b"


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="Invalid username or token. Password authentication is not supported for Git operations.\n",
        headers={"WWW-Authenticate": 'Basic realm="GitHub"'},
    )


async def handle(twin: GitHubTwin, request: web.Request) -> web.StreamResponse:
    owner, name, service = (
        request.match_info["owner"],
        request.match_info["name"],
        request.match_info["service"],
    )
    if service not in SERVICES:
        return web.Response(status=404, text="Not Found\n")
    repo = twin.state.repo(owner, name)
    password = parse_basic(request.headers.get("Authorization"))
    if password is None:
        return _unauthorized()
    try:
        token = twin.tokens.check(password)
    except BadCredentials:
        return _unauthorized()
    pushing = service == "git-receive-pack" or request.query.get("service") == "git-receive-pack"
    what = f"{owner}/{name} {'push' if pushing else 'fetch'}"
    if (
        repo is None
        or repo.installation_id != token.installation_id
        or (token.repositories is not None and repo.name not in token.repositories)
    ):
        # GitHub hides a repository the token does not cover: "not found", not "forbidden".
        twin.git_refusals.append((f"{owner}/{name}", "push" if pushing else "fetch", 404))
        log.info("git %s refused: outside the token's repositories", what)
        return web.Response(status=404, text="Repository not found.\n")
    if not holds(token.permissions, "contents", "write" if pushing else "read"):
        # A push answers 403 with GitHub's words; a fetch without contents:read finds nothing.
        status, text = (403, "Write access to repository not granted.") if pushing else (404, "Repository not found.")
        twin.git_refusals.append((repo.full_name, "push" if pushing else "fetch", status))
        log.info("git %s refused: the token lacks contents permission", what)
        return web.Response(status=status, text=text + "\n")

    before = await gitrepo.refs(repo.bare_path) if service == "git-receive-pack" else {}
    body = await request.read()
    status, headers, payload = await _run_backend(twin, request, repo.bare_path, service, body)
    response = web.Response(status=status, body=payload, headers=headers)
    if service == "git-receive-pack" and status == 200:
        twin.push_scopes.append((repo.full_name, token.repositories, dict(token.permissions)))
        after = await gitrepo.refs(repo.bare_path)
        for ref, sha in after.items():
            if before.get(ref) != sha:
                await twin._fire_push(repo.full_name, ref, sha, before.get(ref))
    return response


async def _run_backend(
    twin: GitHubTwin, request: web.Request, bare: os.PathLike[str], service: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    root = os.fspath(bare)
    project_root, repo_dir = os.path.dirname(os.path.dirname(root)), root
    path_info = "/" + os.path.relpath(repo_dir, project_root) + "/" + service
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.fspath(twin.root),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_PROJECT_ROOT": project_root,
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.receivepack",
        "GIT_CONFIG_VALUE_0": "true",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path_info,
        "QUERY_STRING": request.query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": "x-access-token",
        "REMOTE_ADDR": request.remote or "127.0.0.1",
    }
    # aiohttp may already have inflated a gzip body; tell git only if it has not.
    if body.startswith(GZIP_MAGIC) and request.headers.get("Content-Encoding", "").lower() == "gzip":
        env["HTTP_CONTENT_ENCODING"] = "gzip"
    if "Git-Protocol" in request.headers:
        env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(body)
    if err:
        log.debug("git http-backend: %s", err.decode(errors="replace").strip())
    return _parse_cgi(out)


def _parse_cgi(out: bytes) -> tuple[int, dict[str, str], bytes]:
    """Split a CGI response into status, headers and body."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
    if not ends:
        return 502, {}, out
    end, size = min(ends)
    head, payload = out[:end].decode("latin-1"), out[end + size :]
    status, headers = 200, {}
    for line in head.replace("\r\n", "\n").split("\n"):
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    return status, headers, payload
