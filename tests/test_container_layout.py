"""The README's container commands, run against the image's layout without a Docker engine.

What the image (Dockerfile) gives the service, reproduced here: an
unprivileged user (uid 10001), the working directory `/app` read-only to it
(app.yml, prompts), `/data` a volume it owns (DATA_DIR). The `docker run`
lines are read from the README's "container commands" block and carried out
as docker would: `-e NAME=VALUE` into the environment, `-v VOLUME:/data` a
directory kept between runs, `--env-file FILE` parsed by docker's rules
(KEY=VALUE lines, `#` comments, no quote stripping). The service runs with
its uid dropped (setpriv) when the tests run as root; otherwise as the
current user, which is then the unprivileged one.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.service_process import COMPOUND, ServiceProcess, base_env
from tests.test_manifest import docker_env_file
from tests.test_setup_mode import browser, setup_link

ROOT = Path(__file__).resolve().parent.parent
UID = 10001  # the image's `compound` user
BLOCK = re.compile(r"<!-- container-commands -->\s*```(?:sh|console)?\n(.*?)```", re.S)


def readme_commands() -> list[list[str]]:
    block = BLOCK.search((ROOT / "README.md").read_text())
    assert block, "README.md has no container-commands block"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip().startswith("docker run")]
    return [shlex.split(line) for line in lines]


class Image:
    """The image's file system layout in a directory, and `docker run` carried out in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = root / "app"
        self.volumes = root / "volumes"
        self.app.mkdir()
        shutil.copy(ROOT / "app.yml", self.app / "app.yml")
        shutil.copytree(ROOT / "prompts", self.app / "prompts")
        for path in [self.app, *self.app.rglob("*")]:  # root's, read-only to the service
            path.chmod(0o555 if path.is_dir() else 0o444)
        self.volumes.mkdir()
        self.home = root / "home"
        self.home.mkdir()
        if os.geteuid() == 0:
            os.chown(self.home, UID, UID)

    def volume(self, name: str) -> Path:
        path = self.volumes / name
        if not path.exists():
            path.mkdir()  # as the image's `mkdir -p /data && chown compound /data`
            if os.geteuid() == 0:
                os.chown(path, UID, UID)
        return path

    def run(self, argv: list[str], extra_env: dict[str, object]) -> ServiceProcess:
        """`docker run … compound [command]`: the service as the image runs it."""
        assert argv[:2] == ["docker", "run"], argv
        env: dict[str, object] = {"DATA_DIR": "/data", "PYTHONUNBUFFERED": "1"}  # the image's ENV
        args = iter(argv[2:])
        rest: list[str] = []
        data: Path | None = None
        for arg in args:
            if arg in ("-e", "--env"):
                name, _, value = next(args).partition("=")
                env[name] = value
            elif arg == "--env-file":
                path = next(args)
                env.update(docker_env_file(self.resolve(path, data).read_text()))
            elif arg in ("-v", "--volume"):
                name, _, target = next(args).partition(":")
                assert target == "/data", arg
                data = self.volume(name)
            elif arg in ("-p", "--publish", "--security-opt", "--user", "--name"):
                next(args)
            elif arg in ("--rm", "-it", "-d", "-i", "-t"):
                pass
            else:
                rest.append(arg)
        assert rest[0] == "compound", rest  # the image's name
        command = rest[1:] or ["compound", "serve"]  # the image's CMD
        assert data is not None, "no /data volume"
        env["DATA_DIR"] = str(data) if env.get("DATA_DIR") == "/data" else env["DATA_DIR"]
        env.update(extra_env)
        env["HOME"] = str(self.home)
        process_env = base_env(**env)
        process_env.pop("HOST", None)
        host = process_env.pop("HOST_OVERRIDE", None)
        service = ServiceProcess(self.root, process_env, command=command[1], args=tuple(command[2:]), host=host)
        service.cwd = self.app  # WORKDIR /app
        service.log_path = self.root / f"compound-{len(list(self.root.glob('compound-*.log')))}.log"
        return service

    def resolve(self, path: str, data: Path | None) -> Path:
        """A host path of the README's commands: the volume's directory stands for it."""
        if path.startswith("/data/") and data is not None:
            return data / path.removeprefix("/data/")
        return self.root / path


@pytest.fixture
def image():
    root = Path(tempfile.mkdtemp(prefix="compound-image-", dir="/tmp"))
    root.chmod(0o755)  # the service's user reaches it (pytest's own tmp is the test user's only)
    try:
        yield Image(root)
    finally:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def as_the_image_user(monkeypatch):
    """Commands run as uid 10001 when the tests run as root (setpriv drops it)."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv is needed to drop root for the container-layout test")
        drop = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--"]
        monkeypatch.setattr("tests.service_process.COMPOUND", drop + COMPOUND)


def uid_of(service: ServiceProcess) -> int:
    assert service.proc is not None
    status = Path(f"/proc/{service.proc.pid}/status").read_text()
    pid = service.proc.pid
    # setpriv execs the service: the pid is the service's own.
    assert "python" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


async def test_the_readme_container_commands_work_in_the_image_layout(image, twin):
    register, run, run_with_env_file = readme_commands()
    github = {"GHE_HOST": twin.host, "GHE_PROTOCOL": "http", "LOG_FORMAT": "text"}

    # 1. Setup mode, as the README registers the App. Inside a container it listens on
    # 0.0.0.0; here the README's -e HOST=0.0.0.0 is kept but loopback is enough.
    first = image.run(register, {**github, "HOST_OVERRIDE": "127.0.0.1"})
    assert "-e" in register and "HOST=0.0.0.0" in register
    await first.start()
    try:
        expected_uid = UID if os.geteuid() == 0 else os.geteuid()
        assert uid_of(first) == expected_uid
        link = setup_link(first)
        twin.add_manifest_code("container-code")
        async with browser() as operator:
            async with operator.get(link) as r:
                page = await r.text()
            action = html.unescape(re.search(r'<form action="([^"]+)"', page).group(1))
            state = re.search(r"[?&]state=([^&]+)", action).group(1)
            async with operator.get(first.url + "/setup", params={"code": "container-code", "state": state}) as r:
                assert r.status == 200, await r.text()
                assert "Compound is registered" in await r.text()
    finally:
        assert await first.stop() == 0, first.logs()

    # The credentials are on the volume, the service's own and private; nothing in /app.
    data = image.volume("compound-data")
    env_file, key_file = data / ".env", data / f"github-app-{twin.app_id}.private-key.pem"
    for path in (env_file, key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == expected_uid
    assert sorted(p.name for p in image.app.iterdir()) == ["app.yml", "prompts"]
    text = env_file.read_text()
    # docker's --env-file and the service's loader read the same values: no quotes, one line each.
    assert docker_env_file(text) == dotenv_values(env_file)
    values = docker_env_file(text)
    assert values["APP_ID"] == str(twin.app_id) and values["WEBHOOK_SECRET"] == twin.webhook_secret
    assert "'" not in text and '"' not in text and "BEGIN" not in text
    assert values["PRIVATE_KEY_PATH"] == str(key_file.resolve())

    # 2. The README's run command: the service reads the volume's .env at start.
    # 3. A copy of it passed to `docker run --env-file` (the volume's own removed, so
    #    only docker's reading of the file can carry the credentials): the same App.
    for argv in (run, run_with_env_file):
        if argv is run_with_env_file:
            shutil.copy(env_file, image.root / "compound.env")  # docker cp
            env_file.unlink()
        service = image.run(argv, {**github, "HOST_OVERRIDE": "127.0.0.1", "REDELIVER": "off"})
        await service.start()
        try:
            assert uid_of(service) == expected_uid
            health = await service.get_json("/healthz")
            assert health["registered"] is True, service.logs()
            assert f"authenticated as GitHub App '{twin.app_slug}' (id {twin.app_id})" in service.logs()
        finally:
            assert await service.stop() == 0, service.logs()
        assert twin.webhook_secret not in service.logs()
    assert "--env-file" in run_with_env_file
