"""Each user's items are their own: two principals through the services and stores, a real SQLite file,
the echo text engine and the plain image engine; and the local studio (no principal) as it was."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest, Message
from aigc_studio.errors import NotFound
from aigc_studio.principal import Principal, acting_as
from aigc_studio.services.article_spec import ArticleSpec
from aigc_studio.services.code import RunSpec
from aigc_studio.storage.db import MIGRATIONS, Database
from aigc_studio.storage.owners import OWNED_TABLES, owner_folder
from aigc_studio.studio import Studio

ALICE = Principal(user_id="u-alice", name="alice")
BOB = Principal(user_id="u-bob", name="bob")
ADMIN = Principal(user_id="u-root", name="root", role="admin")
SMALL = {"steps": 1, "width": 64, "height": 64}


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", image_model="plain"))
    yield s
    s.close()


def say(studio, text, cid=None, messages=None):
    prepared = studio.chat.prepare(messages or [Message(role="user", content=text)], conversation_id=cid, source="test")
    return studio.chat.complete(prepared)


def missing_message(call) -> str:
    """The NotFound message of ``call`` (which must raise it)."""
    with pytest.raises(NotFound) as raised:
        call()
    return raised.value.message


def assert_looks_missing(call, item_id, missing_id) -> None:
    """``call(item_id)`` fails exactly as ``call(missing_id)`` does, the id aside: NotFound, same words."""
    expected = missing_message(lambda: call(missing_id)).replace(str(missing_id), str(item_id))
    assert missing_message(lambda: call(item_id)) == expected


def test_m015_adds_an_owner_to_every_table_of_user_items_and_older_rows_have_none(aigc_home):
    path = aigc_home / "old.db"
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL)")
    for fn in MIGRATIONS:
        if fn.__name__ == "m015_owners":
            continue
        conn.executescript(fn())
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    conn.execute(
        "INSERT INTO conversations (id, title, model, source, created, updated) VALUES ('conv-1','t','echo','cli',0,0)"
    )
    conn.close()

    db = Database(path)  # an older studio's database is brought up to date on open
    assert "m015_owners" in db.migrations_applied()
    for table in OWNED_TABLES:
        assert "owner" in [row[1] for row in db.conn.execute(f"PRAGMA table_info({table})")], table
    assert db.conn.execute("SELECT owner FROM conversations WHERE id = 'conv-1'").fetchone()[0] is None
    indexes = {row[1] for row in db.conn.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
    assert {"conversations_owner", "images_owner", "documents_owner", "jobs_owner", "images_path"} <= indexes


def test_history_lists_searches_changes_and_deletes_only_the_callers_conversations(studio):
    with acting_as(ALICE):
        mine = say(studio, "alice's secret plan").conversation_id
    with acting_as(BOB):
        his = say(studio, "bob's secret plan").conversation_id
        assert [c["id"] for c in studio.history.list()] == [his]
        assert {r["id"] for r in studio.history.search("secret plan")} == {his}
        assert {r["id"] for r in studio.history.search("e")} == {his}  # the short (LIKE) search too
        assert studio.history.latest_id() == his
        assert [c["id"] for c in studio.history.export()["conversations"]] == [his]
        # Another user's conversation is exactly a missing one: same error, same words.
        for call in (
            studio.history.get,
            studio.history.delete,
            lambda c: studio.history.rename(c, "taken"),
            lambda c: studio.history.export([c]),
            lambda c: say(studio, "and then?", cid=c),
            lambda c: studio.chat.prepare([], conversation_id=c, regenerate=True, source="test"),
        ):
            assert_looks_missing(call, mine, "conv-nonexistent")
    with acting_as(ALICE):
        conversation = studio.history.get(mine)
        assert conversation["title"] == "alice's secret plan" and conversation["owner"] == "u-alice"
        assert len(conversation["messages"]) == 2
    # The local studio (no principal) sees every conversation, as before.
    assert {c["id"] for c in studio.history.list()} == {mine, his}


def test_a_resent_conversation_continues_only_the_callers_own(studio):
    with acting_as(ALICE):
        first = say(studio, "red green blue")
    resent = [
        Message(role="user", content="red green blue"),
        Message(role="assistant", content=first.text),
        Message(role="user", content="and yellow"),
    ]
    with acting_as(BOB):
        his = say(studio, "", messages=resent)
        assert his.conversation_id != first.conversation_id
        assert studio.history.get(his.conversation_id)["owner"] == "u-bob"
    with acting_as(ALICE):
        assert len(studio.history.get(first.conversation_id)["messages"]) == 2  # nothing of bob's added
        again = say(studio, "", messages=resent)
        assert again.conversation_id == first.conversation_id  # her own resend continues hers


def test_images_and_their_jobs_are_the_submitters_even_though_a_worker_thread_makes_them(studio):
    with acting_as(ALICE):
        result = studio.images.generate(ImageRequest(prompt="alice's boat", seed=1, **SMALL))
    image = result.images[0]
    row = studio.db.conn.execute("SELECT owner FROM images WHERE id = ?", (image.id,)).fetchone()
    job = studio.db.conn.execute("SELECT owner FROM jobs WHERE id = ?", (result.job_id,)).fetchone()
    assert (row[0], job[0]) == ("u-alice", "u-alice")
    with acting_as(BOB):
        assert studio.images.list() == [] and studio.images.list(query="boat") == []
        assert studio.images.known_watermarks() == {}
        assert_looks_missing(studio.images.file, image.id, "img-nonexistent")
        assert_looks_missing(studio.images.delete, image.id, "img-nonexistent")
        assert studio.jobs.describe(result.job_id) is None and studio.jobs.get(result.job_id) is None
        assert not studio.images.may_read_file(image.path)
        assert studio.inspector.item(image.id) is None
        assert [e.id for e in studio.gallery.entries()] == []
    with acting_as(ALICE):
        assert [r["id"] for r in studio.images.list()] == [image.id]
        assert studio.images.file(image.id) == image.path and studio.images.may_read_file(image.path)
        assert studio.jobs.describe(result.job_id)["state"] == "done"
        assert studio.inspector.item(image.id)["prompt"] == "alice's boat"
        assert [e.id for e in studio.gallery.entries()] == [image.id]
    assert studio.images.may_read_file(image.path)  # the local studio: any file
    with acting_as(ALICE):
        studio.images.delete(image.id)
    assert not image.path.exists()


def test_only_the_owner_sees_interrupts_and_skips_a_running_job(studio):
    studio.registry.image_engine("plain").step_delay = 0.05
    with acting_as(ALICE):
        job = studio.images.submit(ImageRequest(prompt="slow", seed=3, steps=40, width=64, height=64, n_iter=2))
    deadline = time.time() + 30
    while job.step < 2:
        assert time.time() < deadline, "the job did not start"
        time.sleep(0.02)
    with acting_as(BOB):
        assert studio.jobs.running() is None and studio.jobs.pending() == []
        assert not studio.jobs.interrupt(job.id) and not studio.jobs.interrupt() and not studio.jobs.skip()
        studio.jobs.interrupt_all()  # a user's "stop everything" stops their own jobs only
        assert not job.control.interrupt.is_set() and not job.control.skip.is_set()
    with acting_as(ALICE):
        assert studio.jobs.running() is job and studio.jobs.pending() == [job]
        assert studio.jobs.describe(job.id)["state"] == "running"
        assert studio.jobs.interrupt(job.id)
    result = job.wait(30)
    assert result.interrupted and job.state == "interrupted"


def test_shutting_down_stops_every_users_jobs_whoever_closes(studio):
    studio.registry.image_engine("plain").step_delay = 0.05
    with acting_as(ALICE):
        job = studio.images.submit(ImageRequest(prompt="slow", seed=3, steps=40, width=64, height=64))
    deadline = time.monotonic() + 60
    while job.state == "queued" and time.monotonic() < deadline:  # a queued job stays queued at a stop
        time.sleep(0.01)
    with acting_as(BOB):
        assert studio.jobs.close(30)
    assert job.state == "interrupted"


def test_documents_their_versions_search_and_exports_are_the_writers_own(studio):
    with acting_as(ALICE):
        run = studio.writing.start(ArticleSpec(title="Alice's garden", length=100), headings=["Roses"])
        assert list(run)[-1].type == "done"
        doc_id = run.document_id
        studio.writing.export(doc_id, "md")
        assert len(studio.writing.exports(doc_id)) == 1
    with acting_as(BOB):
        assert studio.writing.list() == [] and studio.writing.list(query="garden") == []
        assert studio.writing.list(query="Ro") == []  # the short (LIKE) search too
        for call in (
            studio.writing.get,
            lambda d: studio.writing.get(d, 1),
            studio.writing.versions,
            lambda d: studio.writing.save(d, "# Taken\n"),
            lambda d: studio.writing.set_outline(d, ["Weeds"]),
            studio.writing.continue_,
            lambda d: studio.writing.regenerate(d, 1),
            lambda d: studio.writing.export(d, "md"),
            studio.writing.exports,
            studio.writing.delete,
        ):
            assert_looks_missing(call, doc_id, "doc-nonexistent")
        assert studio.text_labels.exports("document", doc_id) == []
        assert studio.inspector.item(doc_id) is None
    with acting_as(ALICE):
        assert [d["id"] for d in studio.writing.list(query="garden")] == [doc_id]
        assert studio.writing.get(doc_id)["versions"] == 2
        studio.writing.delete(doc_id)


def test_code_sessions_versions_and_runs_are_the_runners_own(studio):
    with acting_as(ALICE):
        record = studio.code.run_source("python", "print(6 * 7)", RunSpec(), title="alice.py")
        assert record.result.stdout.strip() == "42"
        session_id, version_id = record.session_id, record.version_id
    with acting_as(BOB):
        other = studio.code.run_source("python", "print(1)", RunSpec(), title="bob.py")
        assert [s["id"] for s in studio.code.sessions()] == [other.session_id]
        assert studio.code.latest_session_id() == other.session_id
        for call in (studio.code.session, lambda c: studio.code.edit(c, "print('taken')"), studio.code.delete):
            assert_looks_missing(call, session_id, "conv-nonexistent")
        for call in (
            studio.code.version,
            studio.code.run,
            lambda v: studio.code.diff(v, other.version_id),
            lambda v: studio.code.diff(other.version_id, v),
        ):
            assert_looks_missing(call, version_id, 999_999)
    with acting_as(ALICE):
        session = studio.code.session(session_id)
        assert [r["id"] for r in session["runs"]] == [record.id]
        assert studio.code.diff(version_id, version_id) == ""


def test_comparisons_are_the_comparers_own_and_their_panes_run_as_them(studio):
    with acting_as(ALICE):
        comparison = studio.compare.text("red green blue", ["echo", "echo2"])
        assert list(comparison)[-1].type == "done"
        cmp_id = comparison.id
        grid = studio.compare.images_compare(
            ImageRequest(prompt="a boat", seed=2, **SMALL), models=["plain", "plain2"], source="test"
        )
        events = list(grid)
        grid_id = events[-1].comparison_id
        grid_path = studio.compare.grid_file(grid_id)
        cells = [r["image_id"] for r in studio.compare.get(grid_id)["results"]]
    with acting_as(BOB):
        assert studio.compare.list() == []
        for comparison_id in (cmp_id, grid_id):
            with pytest.raises(NotFound, match=comparison_id):
                studio.compare.get(comparison_id)
        with pytest.raises(NotFound, match=grid_id):
            studio.compare.grid_file(grid_id)
        assert not studio.images.may_read_file(grid_path)
    with acting_as(ALICE):
        assert {c["id"] for c in studio.compare.list()} == {cmp_id, grid_id}
        assert studio.images.may_read_file(grid_path)
        # the cells' images were made on the comparison's own threads: still hers
        assert {r["id"] for r in studio.images.list()} == set(cells)


def test_arena_battles_and_votes_are_the_voters_own_and_the_leaderboard_counts_the_teams(studio):
    with acting_as(ALICE):
        battle = studio.arena.battle("red green blue", models=["echo", "echo2"], seed=1)
        pictures = studio.arena.battle("a red square", category="image", seed=4, image=SMALL)
    with acting_as(BOB):
        for battle_id in (battle["id"], pictures["id"]):
            with pytest.raises(NotFound, match=battle_id):
                studio.arena.get(battle_id)
            with pytest.raises(NotFound, match=battle_id):
                studio.arena.vote(battle_id, "a")
        his = studio.arena.battle("one two", models=["echo", "echo2"], seed=2)
        studio.arena.vote(his["id"], "tie")
    with acting_as(ALICE):
        assert studio.arena.get(battle["id"])["vote"] is None  # bob's vote did not land on hers
        studio.arena.vote(battle["id"], "a")
        # the image battle's pictures, made on its side threads, are hers
        assert len(studio.images.list()) == 2
        board = studio.arena.leaderboard("chat", bootstrap=10)
    assert board.battles == 2  # alice's vote and bob's


def test_templates_and_styles_are_each_users_own_and_the_shipped_ones_everyones(studio, aigc_home):
    text = 'name = "mine"\nlanguage = "en"\nkind = "general"\nprompt = "Say it."\n'
    with acting_as(ALICE):
        studio.templates.save(text)
        studio.prompts.styles.save("Oil", "oil painting")
        assert studio.templates.get("mine.en").prompt == "Say it."
    assert (aigc_home / "users" / "u-alice" / "templates" / "mine.en.toml").is_file()
    with acting_as(BOB):
        keys = [t.key for t in studio.templates.all()]
        assert "mine.en" not in keys and "polish.en" in keys  # the shipped ones are everyone's
        assert_looks_missing(studio.templates.get, "mine.en", "nope.en")
        assert_looks_missing(studio.templates.delete, "mine.en", "nope.en")
        assert_looks_missing(studio.prompts.styles.get, "Oil", "Nope")
        assert studio.prompts.styles.all() == []
    assert "mine.en" not in [t.key for t in studio.templates.all()]  # the local studio's own folder


def test_owner_folders_never_leave_the_users_folder():
    assert owner_folder("u-alice") == "u-alice"
    for odd in ("../etc", "a/b", "", "x" * 65, "名字"):
        assert owner_folder(odd).startswith("~") and "/" not in owner_folder(odd) and ".." not in owner_folder(odd)


def test_an_admin_adopts_the_local_studios_items_which_no_one_saw_before(studio, aigc_home):
    local = say(studio, "made on my laptop").conversation_id
    image = studio.images.generate(ImageRequest(prompt="laptop boat", seed=1, **SMALL)).images[0]
    studio.templates.save('name = "old"\nlanguage = "en"\nkind = "general"\nprompt = "Old."\n')
    studio.prompts.styles.save("Ink", "ink drawing")
    for who in (ADMIN, BOB):  # on a team server, ownerless items are no one's
        with acting_as(who):
            assert studio.history.list() == [] and studio.images.list() == []
    counts = studio.ownership.local_items()
    assert counts["conversations"] == 1 and counts["images"] == 1 and counts["jobs"] == 1
    assert counts["templates"] == 1 and counts["styles"] == 1

    with acting_as(ADMIN):
        studio.prompts.styles.save("Mine", "already mine")
    adopted = studio.ownership.adopt_local_items(ADMIN.user_id)
    assert adopted == {**counts, "templates": 1, "styles": 1}
    assert all(n == 0 for n in studio.ownership.local_items().values())
    with acting_as(ADMIN):
        assert [c["id"] for c in studio.history.list()] == [local]
        assert [r["id"] for r in studio.images.list()] == [image.id]
        assert studio.templates.get("old.en").source == "user"
        assert [s.name for s in studio.prompts.styles.all()] == ["Mine", "Ink"]
    with acting_as(BOB):
        assert studio.history.list() == [] and studio.images.list() == []
    assert not (aigc_home / "templates" / "old.en.toml").exists() and not (aigc_home / "styles.csv").exists()


def test_threads_the_services_start_work_as_the_caller(studio):
    seen = {}

    def chat_as_alice():
        with acting_as(ALICE):
            seen["cid"] = say(studio, "from a thread").conversation_id

    thread = threading.Thread(target=chat_as_alice)
    thread.start()
    thread.join(30)
    # The engine's own thread recorded the answer, as the user who asked.
    assert studio.db.conn.execute("SELECT owner FROM conversations WHERE id = ?", (seen["cid"],)).fetchone()[0] == (
        "u-alice"
    )
