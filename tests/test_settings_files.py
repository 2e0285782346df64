"""Where settings come from: ./.env, the credentials file setup mode writes, the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import load_settings

NAMES = (
    "APP_ID",
    "DATA_DIR",
    "ENV_FILE",
    "HOST",
    "LOG_LEVEL",
    "PORT",
    "WEBHOOK_SECRET",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
)


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_credentials_file_in_data_dir_is_read_over_dot_env(workdir):
    (workdir / ".env").write_text("APP_ID=\nLOG_LEVEL=debug\nPORT=4000\nDATA_DIR=state\n")
    (workdir / "state").mkdir()
    (workdir / "state" / ".env").write_text("APP_ID=77\nPORT=5000\n")
    settings = load_settings()
    assert settings.credentials_file == Path("state/.env")
    assert settings.app_id == 77
    assert settings.port == 5000
    assert settings.log_level == "debug"  # what the credentials file does not set


def test_the_environment_wins_over_both_files(workdir, monkeypatch):
    (workdir / ".env").write_text("PORT=4000\n")
    (workdir / "data").mkdir()
    (workdir / "data" / ".env").write_text("APP_ID=77\nPORT=5000\n")
    monkeypatch.setenv("PORT", "6000")
    monkeypatch.setenv("APP_ID", "88")
    settings = load_settings()
    assert (settings.port, settings.app_id) == (6000, 88)


def test_env_file_names_another_credentials_file(workdir, monkeypatch):
    (workdir / "data").mkdir()
    (workdir / "data" / ".env").write_text("APP_ID=77\n")
    (workdir / "elsewhere.env").write_text("APP_ID=99\n")
    monkeypatch.setenv("ENV_FILE", str(workdir / "elsewhere.env"))
    settings = load_settings()
    assert settings.credentials_file == workdir / "elsewhere.env"
    assert settings.app_id == 99


def test_no_credentials_file_is_setup_mode(workdir):
    settings = load_settings()
    assert settings.app_id is None
    assert settings.credentials_file == Path("data/.env")


def test_an_env_file_not_written_yet_is_setup_mode(workdir, monkeypatch):
    monkeypatch.setenv("ENV_FILE", str(workdir / "secrets" / "compound.env"))
    settings = load_settings()
    assert settings.app_id is None
    assert settings.credentials_file == workdir / "secrets" / "compound.env"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "127.0.0.1"),  # setup mode: nobody else reaches the setup pages
        ({"APP_ID": "5"}, "0.0.0.0"),
        ({"HOST": "0.0.0.0"}, "0.0.0.0"),
        ({"HOST": ""}, "127.0.0.1"),
        ({"HOST": "::1", "APP_ID": "5"}, "::1"),
    ],
)
def test_listen_host(env, expected):
    assert load_settings(_env_file=None, **env).listen_host == expected
