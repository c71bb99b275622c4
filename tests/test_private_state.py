"""`<state>` (token, logs, databases, history) is readable by its owner only, and the token's
temp file cannot be planted."""

from __future__ import annotations

import os
import stat

from tools.server.files import TOKEN_NAME, read_token, write_token
from tools.sqlite_db import connect


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_folder_is_created_0700_and_an_open_one_is_tightened(tmp_path):
    state = tmp_path / "home" / ".anime-chat"
    usual = os.umask(0o022)
    try:
        token = write_token(state)
    finally:
        os.umask(usual)
    assert mode(state) == 0o700 and mode(state / TOKEN_NAME) == 0o600
    assert read_token(state) == token
    os.chmod(state, 0o755)
    connect(state / "jobs.sqlite", "CREATE TABLE IF NOT EXISTS t (x)").close()
    assert mode(state) == 0o700


def test_a_symlink_planted_at_the_old_temp_name_is_never_written_through(tmp_path):
    state = tmp_path / ".anime-chat"
    state.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the name the old code used
        (state / f".{TOKEN_NAME}.{pid}.tmp").symlink_to(victim)
    token = write_token(state)
    assert victim.read_text() == "keep me" and read_token(state) == token
    assert not (state / TOKEN_NAME).is_symlink()
    assert sorted(p.name for p in state.iterdir() if not p.is_symlink()) == [TOKEN_NAME]


def test_a_bug_on_a_fresh_home_logs_into_a_private_state_folder(tmp_path, monkeypatch):
    from assistant.cli_common import log_bug

    monkeypatch.setenv("ANIME_HOME", str(tmp_path / "home"))
    usual = os.umask(0o022)
    try:
        log_bug(RuntimeError("a bug"))
    finally:
        os.umask(usual)
    state = tmp_path / "home" / ".anime-chat"
    assert "a bug" in (state / "logs" / "errors.log").read_text()
    assert mode(state) == 0o700


def test_the_token_stays_across_restarts_unless_asked_or_no_longer_private(tmp_path):
    state = tmp_path / ".anime-chat"
    token = write_token(state)
    assert write_token(state) == token  # a client configured with it keeps working
    fresh = write_token(state, new=True)
    assert fresh != token and read_token(state) == fresh
    os.chmod(state / TOKEN_NAME, 0o644)  # others could read it: it is no secret any more
    assert write_token(state) not in (fresh, None) and mode(state / TOKEN_NAME) == 0o600
    (state / TOKEN_NAME).write_text("short\n")
    os.chmod(state / TOKEN_NAME, 0o600)
    assert write_token(state) != "short"
    target = tmp_path / "planted"
    target.write_text("A" * 43)
    os.chmod(target, 0o600)
    (state / TOKEN_NAME).unlink()
    (state / TOKEN_NAME).symlink_to(target)
    kept = write_token(state)
    assert kept != "A" * 43 and not (state / TOKEN_NAME).is_symlink()
