"""Issue 13: the naming rule, text escaping, and display names claimed by a browser token."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

from cgcnn.app import identity, plain
from cgcnn.errors import CGCNNError
from cgcnn.names import MAX_NAME_LENGTH, InvalidName, is_valid_name, validate_name
from cgcnn.runs.store import RunStore

HOSTILE = [
    "[click](http://evil.example/x)",
    "![](http://evil.example/beacon.png)",
    '<span style="color:red">SERVER WILL SHUT DOWN</span>',
    ":red[SERVER WILL SHUT DOWN]",
    "a" * (MAX_NAME_LENGTH + 1),
    "",
    "tab\there",
    "rtl\u202eoverride",
]


@pytest.mark.parametrize("name", ["alice", "Zoë Ångström", "名前 2", "run_1.final-v2", "a" * MAX_NAME_LENGTH])
def test_good_names_pass(name):
    assert validate_name(f"  {name} ") == name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_one_line(name):
    with pytest.raises(InvalidName) as info:
        validate_name(name, what="a run name")
    assert "\n" not in str(info.value)
    assert not is_valid_name(name)


def test_zoo_names_are_reserved_case_insensitively():
    from cgcnn.zoo import reserved_names

    with pytest.raises(InvalidName, match="zoo model 'band-gap'"):
        validate_name("Band-Gap", reserved_names(), what="a run name")
    assert validate_name("band-gap 2", reserved_names()) == "band-gap 2"


def test_save_run_as_validates_and_can_rename_a_legacy_name(tmp_path):
    from cgcnn.zoo import save_run_as

    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run({"pretrained": "band-gap"}, owner="alice", status="done")
    store.set_name(run, HOSTILE[0])  # stored before the rule existed
    with pytest.raises(InvalidName):
        save_run_as(store, run, HOSTILE[1])
    with pytest.raises(InvalidName):
        save_run_as(store, run, "BAND-GAP")
    assert save_run_as(store, run, "my model") == "my model"
    assert store.get(run).name == "my model"


def test_cli_runs_save_refuses_a_hostile_name(tmp_path, monkeypatch, capsys):
    from cgcnn.cli.main import main

    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    run = RunStore().create_run({"pretrained": "band-gap"}, status="done")
    assert main(["runs", "save", run, "![](http://x)"]) == 2
    assert "may hold only letters" in capsys.readouterr().err
    assert main(["runs", "save", run, "formation-energy-per-atom"]) == 2
    assert RunStore().get(run).name is None


def _unescaped(text: str) -> str:
    """What Markdown would read as syntax: the text with backslash-escaped characters removed."""
    return re.sub(r"\\.", "", text)


@pytest.mark.parametrize("name", [*HOSTILE[:4], "www.evil.example", "mail@evil.example"])
def test_markdown_escape_leaves_no_syntax(name):
    out = _unescaped(plain.markdown(name))
    for syntax in ("[", "](", "<", ":red", "www.", "@"):
        assert syntax not in out
    assert plain.markdown("broken.cif").startswith("broken.cif")


def test_plotly_escape():
    assert plain.plotly('<a href="http://x">y</a>') == '&lt;a href="http://x"&gt;y&lt;/a&gt;'


# --------------------------------------------------------------------------------------------------- identity


def tokens(store: RunStore) -> tuple[str, str]:
    """Two browsers' tokens, issued by the server at ``store``'s home."""
    return identity.new_token(store.home), identity.new_token(store.home)


def test_second_user_typing_the_first_users_name_is_refused(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    TOKEN_A, TOKEN_B = tokens(store)
    alice = identity.sign_in(store, "alice", TOKEN_A)
    assert alice.signed_in and identity.sign_in(store, "alice", TOKEN_A) == alice  # a reload
    with pytest.raises(identity.NameClaimed, match="already used"):
        identity.sign_in(store, "Alice", TOKEN_B)
    bob = identity.sign_in(store, "bob", TOKEN_B)
    run = store.get(store.create_run({"pretrained": "band-gap"}, owner="alice", status="done"))
    assert identity.can_modify(alice, run)
    assert not identity.can_modify(bob, run)
    assert not identity.can_modify(identity.Identity(), run)
    assert identity.can_modify(bob, run, is_teacher=True)
    # only the token's hash is stored
    with sqlite3.connect(store.path) as conn:
        stored = conn.execute("SELECT token_hash FROM name_claims").fetchall()
    assert all(TOKEN_A not in row[0] and TOKEN_B not in row[0] for row in stored)


def test_class_code_is_needed_for_a_new_name(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    TOKEN_A, TOKEN_B = tokens(store)
    identity.sign_in(store, "early", TOKEN_A)
    monkeypatch.setenv(identity.CLASS_CODE_ENV, "physics-7")
    with pytest.raises(identity.ClassCodeRequired):
        identity.sign_in(store, "carol", TOKEN_B)
    with pytest.raises(identity.ClassCodeRequired, match="not right"):
        identity.sign_in(store, "carol", TOKEN_B, code="chem")
    assert identity.sign_in(store, "carol", TOKEN_B, code=" physics-7 ").name == "carol"
    assert identity.sign_in(store, "carol", TOKEN_B).name == "carol"  # claimed: no code on later visits
    assert identity.sign_in(store, "early", TOKEN_A).name == "early"


def test_display_name_and_token_rules(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    TOKEN_A, _ = tokens(store)
    with pytest.raises(InvalidName):
        identity.sign_in(store, ":red[boss]", TOKEN_A)
    with pytest.raises(identity.TokenRefused, match="not issued by this server"):
        identity.sign_in(store, "dave", "short")


def test_only_server_issued_unexpired_tokens_sign_in(tmp_path, monkeypatch):
    """Issue 23: a client-chosen token is refused; a token expires after CGCNN_SIGN_IN_HOURS."""
    store = RunStore(tmp_path / "runs.sqlite")
    made_up = "token-of-browser-a-0123456789abcdef"
    with pytest.raises(identity.TokenRefused, match="not issued by this server"):
        identity.sign_in(store, "erin", made_up)
    other_server = identity.new_token(tmp_path / "elsewhere")  # signed with another server's key
    with pytest.raises(identity.TokenRefused, match="not issued by this server"):
        identity.sign_in(store, "erin", other_server)
    good = identity.new_token(store.home)
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(identity.TokenRefused):
        identity.sign_in(store, "erin", forged)
    monkeypatch.setenv("CGCNN_SIGN_IN_HOURS", "3")
    old = identity.new_token(store.home, now=time.time() - 3 * 3600 - 5)
    with pytest.raises(identity.TokenRefused, match=r"expired \(3 h .*CGCNN_SIGN_IN_HOURS"):
        identity.sign_in(store, "erin", old)
    assert identity.sign_in(store, "erin", good).name == "erin"
    teacher_token = identity.new_token(store.home, purpose="teacher:x")
    assert not identity.valid_token(teacher_token, store.home)  # a token of one purpose is no other
    key_file = store.home / identity.KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0  # the signing key is the server user's alone


def test_teacher_releases_a_name_from_the_library_and_the_cli(tmp_path, monkeypatch, capsys):
    from cgcnn.cli.main import main

    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    store = RunStore()
    lost, new = tokens(store)
    identity.sign_in(store, "Frank", lost)
    with pytest.raises(identity.NameClaimed):
        identity.sign_in(store, "frank", new)
    with pytest.raises(CGCNNError, match="only the teacher"):
        identity.release_name(store, "frank", is_teacher=False)
    assert identity.release_name(store, "FRANK", is_teacher=True)
    assert identity.sign_in(store, "frank", new).name == "frank"
    assert main(["names", "release", "Frank"]) == 0
    assert "released the display name 'Frank'" in capsys.readouterr().out
    assert main(["names", "release", "Frank"]) == 1
    assert "nobody holds" in capsys.readouterr().err
    assert identity.sign_in(store, "frank", lost).name == "frank"


# --------------------------------------------------------------------------------------------------- issue 23


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("al\u0456ce", "looks like 'alice'"),  # Cyrillic і
        ("\uff41\uff4c\uff49\uff43\uff45", "already used by someone else"),  # fullwidth: NFKC makes it 'alice'
        ("ALICE", "already used by someone else"),
    ],
)
def test_a_look_alike_of_a_taken_display_name_is_refused_naming_it(tmp_path, typed, message):
    store = RunStore(tmp_path / "runs.sqlite")
    alice, mallory = tokens(store)
    identity.sign_in(store, "alice", alice)
    with pytest.raises(identity.NameClaimed, match=re.escape(message)):
        identity.sign_in(store, typed, mallory)
    assert identity.sign_in(store, typed, alice).name  # alice herself, however she types it


@pytest.mark.parametrize("name", ["alice\u3164", "\u3164", "al\u200bice", "\u202ealice", "\u2800", "bob\ufeff"])
def test_invisible_and_filler_characters_are_refused(name):
    with pytest.raises(InvalidName, match=r"invisible or filler characters \(U\+"):
        validate_name(name, what="a display name")


def test_name_key_folds_width_case_and_confusables():
    from cgcnn.names import name_key

    assert {name_key(n) for n in ["alice", "Alice", "al\u0456ce", "\uff41\uff4c\uff49\uff43\uff45", "\u0391lice"]} == {
        "alice"
    }
    assert name_key("b\u0430nd-gap") == "band-gap"
    assert name_key("Zoë") == "zoë" and name_key("名前") == "名前"  # other scripts keep their letters


def test_a_run_name_looking_like_a_zoo_model_or_another_run_is_refused(tmp_path):
    from cgcnn.zoo import save_run_as

    store = RunStore(tmp_path / "runs.sqlite")
    first = store.create_run({"pretrained": "band-gap"}, owner="alice", status="done")
    second = store.create_run({"pretrained": "band-gap"}, owner="bob", status="done")
    with pytest.raises(InvalidName, match="looks like the zoo model 'band-gap'"):
        save_run_as(store, first, "b\u0430nd-gap")  # Cyrillic а
    assert save_run_as(store, first, "my model") == "my model"
    with pytest.raises(InvalidName, match="looks like 'my model', which is already used"):
        save_run_as(store, second, "my m\u043edel")  # Cyrillic о
    with pytest.raises(InvalidName, match="invisible"):
        save_run_as(store, second, "my model\u3164")
    assert save_run_as(store, first, "my model") == "my model"  # its own name again is fine


def test_the_quota_counts_look_alike_spellings_as_one_owner(tmp_path, monkeypatch):
    """The hostile case of item 5: eight spellings of one name are one owner for the queue limit."""
    from cgcnn.app.launch import launch
    from cgcnn.training.finetune import FinetuneSpec

    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "2")
    store = RunStore()
    spec = FinetuneSpec(pretrained="band-gap", freeze=2, n_train=40, n_val=20, n_test=20, hyperparams={"epochs": 2})
    launch(store, [spec], owner="alice")
    launch(store, [FinetuneSpec.from_dict({**spec.to_dict(), "seed": 1})], owner="ALICE")
    with pytest.raises(CGCNNError, match="limit of 2 per person"):
        launch(store, [FinetuneSpec.from_dict({**spec.to_dict(), "seed": 2})], owner="al\u0456ce")
    with pytest.raises(CGCNNError, match="limit of 2 per person"):
        launch(store, [FinetuneSpec.from_dict({**spec.to_dict(), "seed": 3})], owner="\uff41\uff4c\uff49\uff43\uff45")


def test_the_migration_rekeys_owners_and_claims_and_the_earliest_look_alike_keeps_the_name(tmp_path):
    from cgcnn.runs.schema import MIGRATIONS, _rekey_name_claims

    rekeying = next(k for k, steps in enumerate(MIGRATIONS) if _rekey_name_claims in steps)
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create_run({"pretrained": "band-gap"}, owner="al\u0456ce", status="done")
    with sqlite3.connect(store.path) as conn:  # the file as the previous rule left it
        conn.execute("UPDATE runs SET owner_key = ? WHERE id = ?", ("al\u0456ce", run))
        rows = [
            ("alice", "alice", "hash-a", 1.0),
            ("al\u0456ce", "al\u0456ce", "hash-m", 2.0),
            ("bob", "Bob", "h", 3.0),
        ]
        conn.executemany("INSERT INTO name_claims VALUES (?, ?, ?, ?)", rows)
        conn.execute(f"PRAGMA user_version = {rekeying}")  # later migrations run again: they must be idempotent
    migrated = RunStore(tmp_path / "runs.sqlite")
    assert [r.id for r in migrated.list_runs(owner="alice")] == [run]
    assert migrated.name_claim("alice") == "hash-a" and migrated.name_claim("bob") == "h"
    with sqlite3.connect(store.path) as conn:
        assert sorted(k for (k,) in conn.execute("SELECT name_key FROM name_claims")) == ["alice", "bob"]


def test_a_returning_browsers_token_names_it(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    token, other = tokens(store)
    identity.sign_in(store, "Hana", token)
    assert identity.name_of_token(store, token) == "Hana"  # a reload with the cookie: signed in again
    assert identity.name_of_token(store, other) == ""
    assert identity.name_of_token(store, "made-up-token-0123456789") == ""
