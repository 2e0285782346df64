"""DATABASE_URL that reaches outside, through the real CLI: one line naming the variable, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CASES = [
    ("mysql://user@127.0.0.1/compound", "unsupported scheme 'mysql'"),
    ("postgresql://127.0.0.1:1/compound", "cannot reach the database (ConnectionRefusedError"),
    ("postgresql://127.0.0.1:5432/compound_no_such_database", "cannot reach the database"),
    ("sqlite:////proc/no-such-dir/compound.db", "cannot create the SQLite file's directory"),
]


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--port", "0"], ["worker"], ["report"]])
@pytest.mark.parametrize("url, message", CASES, ids=["scheme", "refused", "no database", "sqlite dir"])
def test_a_database_url_that_does_not_work_is_one_line_and_exit_2(url, message, command, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "WEBHOOK_SECRET": "s",
        "APP_ID": "1",
        "PRIVATE_KEY_PATH": "",
        "DATA_DIR": str(tmp_path),
    }
    if command == ["worker"] or command[0] == "serve":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        env["PRIVATE_KEY"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    env.pop("PRIVATE_KEY_PATH")
    done = subprocess.run(
        [sys.executable, "-m", "bot", *command], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("compound: DATABASE_URL: ") and message in lines[0], lines[0]
    assert "Traceback" not in done.stderr
