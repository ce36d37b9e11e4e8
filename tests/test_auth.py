"""API keys: the keys file, header parsing, tenants, admin acting for a tenant, hot reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.requests import Request

from app.auth import (
    KEY_HEADER,
    TENANT_HEADER,
    Authenticator,
    add_key,
    build_authenticator,
    hash_key,
    key_entry,
    load_keys,
    new_api_key,
)
from nerve.errors import Forbidden, Unauthenticated
from nerve.settings import load_settings

ALICE, BOB, ROOT = new_api_key(), new_api_key(), new_api_key()


def write_keys(path: Path, *entries: dict[str, object]) -> Path:
    path.write_text(json.dumps(list(entries)))
    return path


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return write_keys(
        tmp_path / "keys.json",
        key_entry(ALICE, "acme", name="alice").model_dump(),
        key_entry(BOB, "globex").model_dump(),
        key_entry(ROOT, "ops", admin=True, name="root").model_dump(),
    )


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


def test_keys_are_random_and_stored_only_as_hashes(keys_file: Path) -> None:
    assert ALICE != BOB and len(ALICE) > 40
    text = keys_file.read_text()
    assert ALICE not in text and hash_key(ALICE) in text
    assert set(load_keys(keys_file)) == {hash_key(k) for k in (ALICE, BOB, ROOT)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"sha256": "x"}', "list"),
        ('[{"sha256": "abc", "tenant": "acme"}]', "0.sha256"),
        (json.dumps([{"sha256": "a" * 64, "tenant": "Acme Corp"}]), "0.tenant"),
        (json.dumps([{"sha256": "a" * 64, "tenant": "acme", "key": "plain"}]), "0.key"),
        (
            json.dumps([{"sha256": "a" * 64, "tenant": "a"}, {"sha256": "a" * 64, "tenant": "b"}]),
            "repeats",
        ),
    ],
)
def test_a_bad_keys_file_is_refused_with_the_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_keys(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="cannot read"):
        load_keys(tmp_path / "missing.json")


def test_callers_are_resolved_to_their_tenant(keys_file: Path) -> None:
    auth = Authenticator(keys_file)
    assert auth(request({"Authorization": f"Bearer {ALICE}"})) == "acme"
    assert auth(request({KEY_HEADER: BOB})) == "globex"
    caller = auth.caller(request({"authorization": f"bearer {ROOT}"}))
    assert (caller.tenant, caller.admin, caller.key_name) == ("ops", True, "root")
    # A tenant key naming its own tenant is fine.
    assert auth(request({KEY_HEADER: ALICE, TENANT_HEADER: "acme"})) == "acme"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}, {KEY_HEADER: " "}],
)
def test_missing_key_is_401_with_a_challenge(keys_file: Path, headers: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated, match="API key is required") as info:
        Authenticator(keys_file)(request(headers))
    assert info.value.status == 401
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_unknown_key_is_401(keys_file: Path) -> None:
    with pytest.raises(Unauthenticated, match="not valid"):
        Authenticator(keys_file)(request({KEY_HEADER: new_api_key()}))
    with pytest.raises(Unauthenticated, match="not valid"):
        Authenticator(keys_file)(request({KEY_HEADER: hash_key(ALICE)}))  # the hash is no key


def test_only_admins_act_for_another_tenant(keys_file: Path) -> None:
    auth = Authenticator(keys_file)
    assert auth(request({KEY_HEADER: ROOT, TENANT_HEADER: "acme"})) == "acme"
    with pytest.raises(Forbidden, match="own tenant"):
        auth(request({KEY_HEADER: ALICE, TENANT_HEADER: "globex"}))
    with pytest.raises(Forbidden, match=TENANT_HEADER):
        auth(request({KEY_HEADER: ROOT, TENANT_HEADER: "../etc"}))


def test_keys_file_changes_are_picked_up_and_broken_files_ignored(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.json", key_entry(ALICE, "acme").model_dump())
    now = [0.0]
    auth = Authenticator(path, reload_interval_s=5.0, clock=lambda: now[0])
    assert auth(request({KEY_HEADER: ALICE})) == "acme"

    # Rotation: Alice's key revoked, Bob's added.
    write_keys(path, key_entry(BOB, "acme").model_dump())
    now[0] = 1.0  # within the interval: not re-read yet
    assert auth(request({KEY_HEADER: ALICE})) == "acme"
    now[0] = 6.0
    assert auth(request({KEY_HEADER: BOB})) == "acme"
    with pytest.raises(Unauthenticated):
        auth(request({KEY_HEADER: ALICE}))

    # A half-written file keeps the last good keys instead of locking everyone out.
    path.write_text('[{"sha256": ')
    now[0] = 12.0
    assert auth(request({KEY_HEADER: BOB})) == "acme"


def test_build_authenticator_follows_settings(keys_file: Path) -> None:
    assert build_authenticator(load_settings()) is None
    enabled = build_authenticator(load_settings(auth={"enabled": True, "api_keys_file": keys_file}))
    assert isinstance(enabled, Authenticator)
    with pytest.raises(ValueError, match="NERVE_AUTH_API_KEYS_FILE"):
        build_authenticator(load_settings(auth={"enabled": True}))


def test_add_key_appends_atomically_and_the_gateway_picks_it_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = add_key(path, "acme", name="first")
    now = [0.0]
    auth = Authenticator(path, reload_interval_s=1.0, clock=lambda: now[0])
    second = add_key(path, "ops", admin=True)
    now[0] = 2.0
    assert auth(request({KEY_HEADER: first})) == "acme"
    assert auth.caller(request({KEY_HEADER: second})).admin
    assert path.stat().st_mode & 0o777 == 0o600
    assert first not in path.read_text() and second not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary left behind
    with pytest.raises(ValueError, match="tenant"):
        add_key(path, "Not A Tenant")
    assert len(load_keys(path)) == 2


def test_add_key_keeps_the_group_access_an_operator_gave_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    add_key(path, "acme")
    path.chmod(0o644)  # group read as set for the gateway's user, plus world read
    add_key(path, "ops")
    assert path.stat().st_mode & 0o777 == 0o640  # group kept, others dropped
    assert len(load_keys(path)) == 2
