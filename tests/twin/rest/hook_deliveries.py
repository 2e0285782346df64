"""The App's webhook deliveries: `GET /app/hook/deliveries`, `POST …/{delivery_id}/attempts`.

The twin records every delivery it sends (`GitHubTwin.deliver`) as GitHub
lists them, and a test can add ones it never sent (`record(..., status_code=0)`:
"failed to connect") or mark one failed (`fail`). A redelivery request is
recorded (`requests`) and, when `target` is set, sent there again as GitHub
does: the same GUID and body, a new attempt listed with `redelivery: true`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from .. import webhooks
from ..state import now_iso
from .base import ApiError, Call, Reply, operation

if TYPE_CHECKING:
    from ..server import GitHubTwin


@dataclass
class HookDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    body: bytes
    delivered_at: float = field(default_factory=time.time)
    status_code: int = 202
    redelivery: bool = False
    duration: float = 0.01

    @property
    def status(self) -> str:
        if self.status_code == 0:
            return "failed to connect"
        return "OK" if 200 <= self.status_code < 400 else f"Invalid HTTP Response: {self.status_code}"

    def shape(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": now_iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
        }


class HookDeliveries:
    def __init__(self, twin: GitHubTwin) -> None:
        self._twin = twin
        self.items: list[HookDelivery] = []
        self.requests: list[str] = []  # the GUID of every redelivery asked for, in order
        self.target: str | None = None  # where redeliveries go (the App's webhook URL)
        self._next_id = 1_000_000 + int(time.time()) % 1_000_000 * 10
        self._tasks: set[asyncio.Task[None]] = set()

    def record(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        guid: str | None = None,
        status_code: int = 202,
        at: float | None = None,
        redelivery: bool = False,
    ) -> HookDelivery:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        data = data if isinstance(data, dict) else {}
        inst, repo = data.get("installation"), data.get("repository")
        self._next_id += 1
        item = HookDelivery(
            id=self._next_id,
            guid=guid or str(uuid.uuid4()),
            event=event,
            action=data.get("action") if isinstance(data.get("action"), str) else None,
            installation_id=inst.get("id") if isinstance(inst, dict) else None,
            repository_id=repo.get("id") if isinstance(repo, dict) else None,
            body=body,
            delivered_at=at if at is not None else time.time(),
            status_code=status_code,
            redelivery=redelivery,
        )
        self.items.append(item)
        return item

    def fail(self, guid: str, status_code: int = 0) -> None:
        """Mark the newest attempt of `guid` failed (0: "failed to connect")."""
        attempt = max((i for i in self.items if i.guid == guid), key=lambda i: i.id)
        attempt.status_code = status_code

    def newest_first(self) -> list[HookDelivery]:
        return sorted(self.items, key=lambda i: (i.delivered_at, i.id), reverse=True)

    def redeliver(self, item: HookDelivery) -> None:
        self.requests.append(item.guid)
        if self.target is not None:
            task = asyncio.get_running_loop().create_task(self._send(item, self.target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, item: HookDelivery, url: str) -> None:
        twin = self._twin
        headers = webhooks.delivery_headers(item.event, item.body, twin.webhook_secret, twin.app_id, item.guid)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=item.body, headers=headers) as response:
                    status = response.status
        except aiohttp.ClientError:
            status = 0
        self.record(item.event, item.body, guid=item.guid, status_code=status, redelivery=True)

    async def settle(self) -> None:
        """Wait for the redeliveries under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


@operation("apps/list-webhook-deliveries")
async def list_deliveries(call: Call) -> Reply:
    hooks = call.twin.hook_deliveries
    items = hooks.newest_first()
    status = call.query.get("status")
    if status == "success":
        items = [i for i in items if 200 <= i.status_code < 400]
    elif status == "failure":
        items = [i for i in items if not 200 <= i.status_code < 400]
    try:
        per_page = max(min(int(call.query.get("per_page", "30") or 30), 100), 1)
    except ValueError:
        raise ApiError(400, "Bad request") from None
    start = 0
    cursor = call.query.get("cursor")
    if cursor:
        ids = [f"v1_{i.id}" for i in items]
        if cursor not in ids:
            raise ApiError(422, "Validation Failed", errors=[{"field": "cursor", "code": "invalid"}])
        start = ids.index(cursor)
    page = items[start : start + per_page]
    if start + per_page < len(items):
        following = items[start + per_page]
        url = call.request.url.update_query(per_page=str(per_page), cursor=f"v1_{following.id}")
        call.link = f'<{url}>; rel="next"'
    return Reply(200, [i.shape() for i in page])


@operation("apps/redeliver-webhook-delivery")
async def redeliver(call: Call) -> Reply:
    hooks = call.twin.hook_deliveries
    wanted = call.int_param("delivery_id")
    item = next((i for i in hooks.items if i.id == wanted), None)
    if item is None:
        raise ApiError(422, "Validation Failed", errors=[{"resource": "HookDelivery", "code": "missing"}])
    hooks.redeliver(item)
    return Reply(202, {})
