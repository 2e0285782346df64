"""Repositories: metadata, permissions, contents, branches, refs, commits."""

from __future__ import annotations

import base64
from typing import Any

from .. import gitrepo, shapes, shapes_pulls
from ..state import Repo
from .base import ApiError, Call, Reply, not_found, operation


@operation("repos/get")
async def get_repo(call: Call) -> Reply:
    return Reply(200, shapes.repository(call.twin, call.repo(), full=True))


@operation("repos/get-collaborator-permission-level")
async def get_permission(call: Call) -> Reply:
    repo = call.repo()
    login = call.params["username"]
    if login not in call.twin.state.users and login not in repo.permissions:
        raise ApiError(404, f"{login} is not a user")
    role = repo.permissions.get(login, "none")
    # GitHub folds maintain into write and triage into read in `permission`.
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    member = shapes.user(call.twin, login)
    member["permissions"] = {
        "admin": role == "admin",
        "maintain": role in ("admin", "maintain"),
        "push": role in ("admin", "maintain", "write"),
        "triage": role in ("admin", "maintain", "write", "triage"),
        "pull": role != "none",
    }
    member["role_name"] = role
    return Reply(200, {"permission": legacy, "role_name": role, "user": member})


async def _rev(repo: Repo, ref: str | None) -> str:
    sha = await gitrepo.resolve(repo.bare_path, ref or repo.default_branch)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    return sha


@operation("repos/get-content")
async def get_content(call: Call) -> Reply:
    twin, repo = call.twin, call.repo()
    ref = call.query.get("ref")
    sha = await _rev(repo, ref)
    path = call.params["path"].strip("/")
    entries = await gitrepo.ls_tree(repo.bare_path, sha, path)
    if not entries:
        raise not_found()
    ref_name = ref or repo.default_branch

    def item(entry: gitrepo.Entry) -> dict[str, Any]:
        kind = {"blob": "file", "tree": "dir", "commit": "submodule"}[entry.type]
        if entry.mode == "120000":
            kind = "symlink"
        api = f"{twin.api_url}/repos/{repo.full_name}/contents/{entry.path}?ref={ref_name}"
        html = f"{twin.git_url}/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{ref_name}/{entry.path}"
        git = f"{twin.api_url}/repos/{repo.full_name}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry.sha}"
        raw = f"{twin.git_url}/{repo.full_name}/raw/{ref_name}/{entry.path}" if kind == "file" else None
        return {
            "type": kind,
            "name": entry.path.rsplit("/", 1)[-1],
            "path": entry.path,
            "sha": entry.sha,
            "size": entry.size or 0,
            "url": api,
            "html_url": html,
            "git_url": git,
            "download_url": raw,
            "_links": {"self": api, "git": git, "html": html},
        }

    if len(entries) == 1 and entries[0].path == path and entries[0].type == "blob":
        body = item(entries[0])
        data = await gitrepo.blob(repo.bare_path, entries[0].sha)
        encoded = base64.encodebytes(data).decode()
        body.update({"content": encoded, "encoding": "base64"})
        return Reply(200, body)
    return Reply(200, [item(e) for e in entries])


async def commit_object(call: Call, repo: Repo, sha: str) -> dict[str, Any]:
    """The `commit` schema for ``sha`` (without `files`/`stats`)."""
    return shapes_pulls.commit(call.twin, repo, await gitrepo.commit(repo.bare_path, sha))


@operation("repos/get-commit")
async def get_commit(call: Call) -> Reply:
    repo = call.repo()
    sha = await gitrepo.resolve(repo.bare_path, call.params["ref"])
    if sha is None:
        raise unprocessable_ref(call.params["ref"])
    body = await commit_object(call, repo, sha)
    parent = body["parents"][0]["sha"] if body["parents"] else None
    files = await gitrepo.diff_files(repo.bare_path, parent, sha) if parent else []
    body["files"] = [diff_entry(call, repo, sha, f) for f in files]
    additions = sum(int(f["additions"]) for f in files)  # type: ignore[call-overload]
    deletions = sum(int(f["deletions"]) for f in files)  # type: ignore[call-overload]
    body["stats"] = {"additions": additions, "deletions": deletions, "total": additions + deletions}
    return Reply(200, body)


def unprocessable_ref(ref: str) -> ApiError:
    return ApiError(422, f"No commit found for SHA: {ref}")


def diff_entry(call: Call, repo: Repo, sha: str, f: dict[str, Any]) -> dict[str, Any]:
    base = f"{call.twin.git_url}/{repo.full_name}"
    name = f["filename"]
    return {
        "sha": sha,
        "filename": name,
        "status": f["status"],
        "additions": f["additions"],
        "deletions": f["deletions"],
        "changes": f["additions"] + f["deletions"],
        "blob_url": f"{base}/blob/{sha}/{name}",
        "raw_url": f"{base}/raw/{sha}/{name}",
        "contents_url": f"{call.twin.api_url}/repos/{repo.full_name}/contents/{name}?ref={sha}",
        "patch": f["patch"],
    }


@operation("repos/get-branch")
async def get_branch(call: Call) -> Reply:
    repo = call.repo()
    name = call.params["branch"]
    sha = await gitrepo.resolve(repo.bare_path, f"refs/heads/{name}")
    if sha is None:
        raise ApiError(404, "Branch not found")
    api = f"{call.twin.api_url}/repos/{repo.full_name}/branches/{name}"
    return Reply(
        200,
        {
            "name": name,
            "commit": await commit_object(call, repo, sha),
            "_links": {"self": api, "html": f"{call.twin.git_url}/{repo.full_name}/tree/{name}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{api}/protection",
        },
    )


@operation("git/get-ref")
async def get_ref(call: Call) -> Reply:
    repo = call.repo()
    ref = "refs/" + call.params["ref"].strip("/")
    sha = (await gitrepo.refs(repo.bare_path)).get(ref)
    if sha is None:
        raise not_found()
    kind = (await gitrepo.git(repo.bare_path, "cat-file", "-t", sha)).decode().strip()
    api = f"{call.twin.api_url}/repos/{repo.full_name}/git"
    return Reply(
        200,
        {
            "ref": ref,
            "node_id": shapes.node_id("Ref", repo.id),
            "url": f"{api}/{ref}",
            "object": {"type": kind, "sha": sha, "url": f"{api}/{kind}s/{sha}"},
        },
    )
