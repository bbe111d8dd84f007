"""Credentials: auth file parsing, Docker Hub aliases, secrets kept out of text, private auth files."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    Credential,
    CredentialError,
    CredentialStore,
    canonical_registry,
    memfd_number,
    private_authfile,
    write_authfile,
)

SECRET = "s3cr3t:with-colon"
TOKEN = "refresh-0123456789abcdef"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def authfile(tmp_path: Path, auths: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


def assert_no_secret(text: str) -> None:
    assert SECRET not in text and b64(f"alice:{SECRET}") not in text and TOKEN not in text


def assert_unchained(error: BaseException) -> None:
    """The message is all there is: no chained exception carrying decoded bytes or the document."""
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


# -- Credential ----------------------------------------------------------------------------------


def test_repr_and_str_show_the_username_but_no_secret():
    for credential in (Credential("alice", SECRET), Credential(identity_token=TOKEN),
                       Credential("alice", SECRET, TOKEN)):
        for text in (repr(credential), str(credential), f"{credential}", repr([credential])):
            assert_no_secret(text)
    assert repr(Credential("alice", SECRET)) == "Credential(username='alice', password='***')"


@pytest.mark.parametrize("fields, reason", [
    (("alice", ""), "username and password"),
    (("", SECRET), "username and password"),
    (("al:ice", SECRET), "contains ':'"),
])
def test_invalid_credentials_are_refused_without_the_secret(fields, reason):
    with pytest.raises(CredentialError, match=reason) as refused:
        Credential(*fields)
    assert_no_secret(str(refused.value))


def test_has_password_tells_basic_auth_from_a_token():
    assert Credential("alice", SECRET).has_password
    assert not Credential(identity_token=TOKEN).has_password


# -- reading auth files -----------------------------------------------------------------------------


def test_all_entry_forms_are_read(tmp_path):
    store = CredentialStore.from_authfile(authfile(tmp_path, {
        "quay.io": {"auth": b64(f"alice:{SECRET}")},
        "ghcr.io": {"username": "bob", "password": SECRET},
        "myacr.azurecr.io": {"auth": b64("<token>:"), "identitytoken": TOKEN},
        "registry.example.com:5000": {"auth": b64(f"carol:{SECRET}"), "identitytoken": TOKEN},
    }))
    assert store.lookup("quay.io") == Credential("alice", SECRET)
    assert store.lookup("ghcr.io") == Credential("bob", SECRET)
    assert store.lookup("myacr.azurecr.io") == Credential(identity_token=TOKEN)
    assert store.lookup("registry.example.com:5000") == Credential("carol", SECRET, TOKEN)
    assert store.lookup("registry.example.com") is None
    assert len(store) == 4


@pytest.mark.parametrize("key", [
    "docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/",
    "https://registry-1.docker.io", "HTTPS://Index.Docker.IO/v1/",
])
def test_docker_hub_keys_and_lookups_are_aliases(tmp_path, key):
    store = CredentialStore.from_authfile(authfile(tmp_path, {key: {"auth": b64(f"alice:{SECRET}")}}))
    assert store.registries == {"docker.io"}
    for alias in ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"):
        assert store.lookup(alias) == Credential("alice", SECRET)


@pytest.mark.parametrize("key, registry", [
    ("http://localhost:5000", "localhost:5000"),
    ("https://Quay.IO/v2/", "quay.io"),
    ("https://user:pw@example.com:8443/x", "example.com:8443"),
    ("127.0.0.1:34363", "127.0.0.1:34363"),
])
def test_url_keys_become_host_and_port(key, registry):
    assert canonical_registry(key) == registry


def test_empty_placeholder_entries_and_other_sections_are_ignored(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {}, "quay.io": {"auth": ""}},
                                "credsStore": "desktop", "HttpHeaders": {"User-Agent": "x"}}))
    assert len(CredentialStore.from_authfile(path)) == 0


def test_a_file_without_auths_is_an_empty_store(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    assert len(CredentialStore.from_authfile(path)) == 0


def test_nul_padding_after_the_password_is_dropped(tmp_path):
    store = CredentialStore.from_authfile(authfile(tmp_path, {"quay.io": {"auth": b64(f"alice:{SECRET}\x00\x00")}}))
    assert store.lookup("quay.io").password == SECRET


@pytest.mark.parametrize("auths, reason", [
    ({"quay.io": {"auth": "not base64!" + SECRET}}, "not base64"),
    ({"quay.io": {"auth": b64(f"alice{SECRET.replace(':', '')}")}}, "username:password"),
    ({"quay.io": {"auth": base64.b64encode(b"\xff" + SECRET.encode()).decode()}}, "not base64 of UTF-8"),
    ({"quay.io": {"auth": b64(f"alice:{SECRET}").rstrip("=")}}, "not base64"),
    ({"quay.io": {"username": "alice"}}, "username and password"),
    ({"quay.io": {"username": "alice", "password": 42}}, "must be strings"),
    ({"quay.io": [SECRET]}, "must be a JSON object"),
    ({"quay.io/team": {"auth": b64(f"alice:{SECRET}")}}, "namespace"),
    ({"docker.io": {"auth": b64(f"alice:{SECRET}")},
      "https://index.docker.io/v1/": {"auth": b64(f"bob:{SECRET}")}}, "duplicates"),
])
def test_bad_entries_name_the_file_and_entry_but_never_the_secret(tmp_path, auths, reason):
    path = authfile(tmp_path, auths)
    with pytest.raises(CredentialError, match=reason) as refused:
        CredentialStore.from_authfile(path)
    message = str(refused.value)
    assert str(path) in message and next(iter(auths)) in message
    assert_no_secret(message)
    assert_unchained(refused.value)


@pytest.mark.parametrize("text", [f'{{"auths": {{"quay.io": {{"auth": "{SECRET}"', f"[{json.dumps(SECRET)}]",
                                  f'{{"auths": [{json.dumps(SECRET)}]}}'])
def test_malformed_files_are_refused_without_echoing_their_content(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(CredentialError) as refused:
        CredentialStore.from_authfile(path)
    assert str(path) in str(refused.value)
    assert_no_secret(str(refused.value))
    assert_unchained(refused.value)


def test_a_missing_file_is_a_credential_error(tmp_path):
    with pytest.raises(CredentialError, match="cannot read auth file .*missing.json"):
        CredentialStore.from_authfile(tmp_path / "missing.json")


# -- building and combining stores -------------------------------------------------------------------


def test_from_mapping_takes_auth_entries_and_names_its_source():
    store = CredentialStore.from_mapping({"quay.io": {"username": "alice", "password": SECRET}})
    assert store.lookup("quay.io") == Credential("alice", SECRET)
    with pytest.raises(CredentialError, match="^module params: entry 'quay.io'"):
        CredentialStore.from_mapping({"quay.io": {"username": "alice"}}, source="module params")
    with pytest.raises(CredentialError, match="mapping"):
        CredentialStore.from_mapping(["quay.io"])  # type: ignore[arg-type]


def test_with_credential_and_merged_return_new_stores():
    alice, bob = Credential("alice", SECRET), Credential("bob", SECRET)
    empty = CredentialStore()
    first = empty.with_credential("index.docker.io", alice)
    assert len(empty) == 0 and first.lookup("docker.io") == alice
    second = CredentialStore({"docker.io": bob, "quay.io": bob})
    merged = first.merged(second)
    assert merged.lookup("docker.io") == bob and merged.lookup("quay.io") == bob
    assert second.merged(first).lookup("docker.io") == alice
    assert first.lookup("docker.io") == alice


def test_store_repr_lists_registries_only():
    store = CredentialStore({"quay.io": Credential("alice", SECRET, TOKEN)})
    assert repr(store) == "CredentialStore(registries=['quay.io'])"


# -- writing auth files for skopeo -----------------------------------------------------------------------


@pytest.fixture
def store() -> CredentialStore:
    return CredentialStore({
        "docker.io": Credential("alice", SECRET),
        "quay.io": Credential("bob", SECRET),
        "myacr.azurecr.io": Credential(identity_token=TOKEN),
    })


def private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    return directory


def test_write_authfile_holds_only_the_named_registries_with_mode_0600(tmp_path, store):
    path = write_authfile(store, ["index.docker.io", "myacr.azurecr.io", "anonymous.example.com"],
                          private_dir(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())["auths"]) == {"docker.io", "myacr.azurecr.io"}
    reread = CredentialStore.from_authfile(path)
    assert reread.lookup("docker.io") == store.lookup("docker.io")
    assert reread.lookup("myacr.azurecr.io") == store.lookup("myacr.azurecr.io")
    assert reread.lookup("quay.io") is None


def test_write_authfile_refuses_a_directory_others_can_read(tmp_path, store):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    with pytest.raises(CredentialError, match="group or others"):
        write_authfile(store, ["quay.io"], directory)
    assert not (directory / "auth.json").exists()


@pytest.mark.parametrize("planted", ["file", "symlink"])
def test_write_authfile_never_writes_through_an_existing_path(tmp_path, store, planted):
    directory = private_dir(tmp_path)
    target = tmp_path / "elsewhere"
    if planted == "file":
        (directory / "auth.json").write_text("{}")
    else:
        (directory / "auth.json").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_authfile(store, ["quay.io"], directory)
    assert not target.exists()


def test_private_authfile_lives_in_memory_only_and_is_gone_afterwards(store, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with private_authfile(store, ("quay.io",)) as path:
        fd = memfd_number(path)
        assert fd is not None and os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        assert CredentialStore.from_authfile(path).lookup("quay.io") == Credential("bob", SECRET)
        assert list(tmp_path.iterdir()) == []  # nothing on disk, ever
    with pytest.raises(OSError):
        os.fstat(fd)


def test_private_authfile_is_gone_when_the_body_raises(store):
    with pytest.raises(RuntimeError, match="skopeo died"):
        with private_authfile(store, ("quay.io",)) as path:
            raise RuntimeError("skopeo died")
    with pytest.raises(OSError):
        os.fstat(memfd_number(path))


def test_without_memfd_the_authfile_is_a_private_file_removed_afterwards(store, monkeypatch):
    monkeypatch.delattr(os, "memfd_create")
    with private_authfile(store, ("quay.io",)) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert CredentialStore.from_authfile(path).lookup("quay.io") == Credential("bob", SECRET)
    assert not path.exists() and not path.parent.exists()


def test_private_authfile_with_no_credentials_is_an_empty_auth_file():
    with private_authfile(CredentialStore(), ("quay.io",)) as path:
        assert json.loads(path.read_text()) == {"auths": {}}
