"""``sendcloud-jobs web user add|list|remove`` and the users they store."""

from __future__ import annotations

import io

import pytest
import redis

from worker.cli import main
from worker.web.dashboard.users import authenticate, get_user, user_key


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def add(monkeypatch: pytest.MonkeyPatch, name: str, role: str, password: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["web", "user", "add", name, "--role", role, "--password-stdin"])


def test_add_list_remove(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert add(monkeypatch, "olga", "operator", "a long password 1") == 0
    assert add(monkeypatch, "vic", "viewer", "another password 2") == 0
    assert capsys.readouterr().out == "user olga added (operator)\nuser vic added (viewer)\n"
    stored = redis_client.hgetall(user_key("olga"))
    assert stored[b"password_hash"].startswith(b"$argon2id$")
    assert b"a long password 1" not in b"".join([*stored.keys(), *stored.values()])
    assert authenticate(redis_client, "olga", "a long password 1") == get_user(redis_client,
                                                                             "olga")
    assert authenticate(redis_client, "olga", "a long password 2") is None
    assert authenticate(redis_client, "nobody", "a long password 1") is None

    assert main(["web", "user", "list"]) == 0
    assert capsys.readouterr().out == "olga\toperator\nvic\tviewer\n"
    assert main(["web", "user", "remove", "vic"]) == 0
    assert capsys.readouterr().out == "user vic removed\n"
    assert get_user(redis_client, "vic") is None


@pytest.mark.parametrize(("argv", "password", "message"), [
    (["add", "olga", "--role", "operator"], "short", "password: must be 12 to 1024 characters"),
    (["add", "bad name", "--role", "viewer"], "a long password 1", "name: must be 1 to 64"),
    (["remove", "ghost"], "", "name: no dashboard user named 'ghost'"),
])
def test_a_refused_change_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], argv: list[str],
                                      password: str, message: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    extra = ["--password-stdin"] if argv[0] == "add" else []
    assert main(["web", "user", *argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_a_second_user_of_the_same_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
) -> None:
    assert add(monkeypatch, "olga", "operator", "a long password 1") == 0
    assert add(monkeypatch, "olga", "viewer", "a long password 2") == 2
    assert "name: a user named 'olga' exists; remove it first" in capsys.readouterr().err
    assert get_user(redis_client, "olga").role == "operator"  # type: ignore[union-attr]


def test_without_a_terminal_the_password_must_come_on_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["web", "user", "add", "olga", "--role", "operator"]) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_web_without_a_command_still_serves_and_a_short_secret_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SENDCLOUD_SMS_HOOK_KEY", "hook-key-1234")
    monkeypatch.setenv("SENDCLOUD_WEB_SECRET", "short")
    assert main(["web", "--dashboard", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "SENDCLOUD_WEB_SECRET: must be at least 32 characters" in err
    assert len(err.strip().splitlines()) == 1


def test_the_readmes_user_commands_run_as_written(redis_url: str) -> None:
    """The README's dashboard block, on this test's Redis instead of local.env's."""
    import os
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Operator's dashboard"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = block.group(1).strip().splitlines()
    assert lines[0] == "set -a; . ./local.env; set +a"
    script = "\n".join(["set -e", lines[0], f"export REDIS_URL={redis_url}", *lines[1:]])
    done = subprocess.run(["bash", "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "PATH": f"{root / '.venv/bin'}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["user admin added (operator)", "admin\toperator",
                                        "user admin removed"]
