"""Git workspaces for agent sessions: a bare mirror per repo, a worktree per session.

workspaces = Workspaces(settings.data_dir, settings.git_base_url)
ws = await workspaces.open("octo/app", session_id, "compound/issue-7", token)
...                                   # the agent works in ws.path
sha = await ws.commit(message, bot, trailers, is_forbidden)
if sha: await ws.push(token)
await workspaces.close(ws)
"""

from bot.workspace.git import GitError
from bot.workspace.workspaces import Workspaces
from bot.workspace.worktree import CommitIdentity, Trailers, Workspace

__all__ = ["CommitIdentity", "GitError", "Trailers", "Workspace", "Workspaces"]
