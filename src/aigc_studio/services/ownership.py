"""What happens to the local studio's items when it becomes a team server.

Items made in the local single-user studio have no owner. On a team server they are no one's: every
signed-in user, admins included, sees only their own, so they stay out of sight (never shown to all)
until an admin adopts them: ``adopt_local_items(user_id)`` gives every ownerless record (history,
images, jobs, documents, code sessions, comparisons, arena battles, export records) to that user and
moves the local templates and styles into their folder. ``local_items`` counts what there is to adopt,
so a command that creates the first admin can offer it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..principal import Principal, acting_as
from ..storage.db import Database
from ..storage.owners import adopt, owned_path, unowned
from .prompt_styles import StyleStore

__all__ = ["OwnershipService"]


class OwnershipService:
    def __init__(self, db: Database, home: Path):
        self.db, self.home = db, home

    def local_items(self) -> dict[str, int]:
        """How many items the local studio made that have no owner yet: per table, plus ``templates``
        (user template files) and ``styles`` (styles in styles.csv). All zero: nothing to adopt."""
        counts = unowned(self.db.conn)
        templates = self.home / "templates"
        counts["templates"] = len(list(templates.glob("*.toml"))) if templates.is_dir() else 0
        counts["styles"] = len(StyleStore(self.home / "styles.csv", per_user=False).all())
        return counts

    def adopt_local_items(self, user_id: str) -> dict[str, int]:
        """Give every item without an owner to the user ``user_id``; how many of each were adopted
        (the keys of ``local_items``). Template files and styles move to the user's own folder; a
        template or style the user already has of the same name is kept, and the local one left where
        it was (not counted)."""
        with self.db.tx() as conn:
            counts = adopt(conn, user_id)
        with acting_as(Principal(user_id=user_id, name=user_id)):
            counts["templates"] = self._move_templates(self.home / "templates", owned_path(self.home / "templates"))
            counts["styles"] = self._merge_styles(self.home / "styles.csv", owned_path(self.home / "styles.csv"))
        return counts

    @staticmethod
    def _move_templates(local: Path, mine: Path) -> int:
        if not local.is_dir():
            return 0
        moved = 0
        for path in sorted(local.glob("*.toml")):
            target = mine / path.name
            if target.exists():
                continue
            mine.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
        return moved

    @staticmethod
    def _merge_styles(local: Path, mine: Path) -> int:
        local_store, own_store = StyleStore(local, per_user=False), StyleStore(mine, per_user=False)
        theirs = {s.name for s in own_store.all()}
        moving = [s for s in local_store.all() if s.name not in theirs]
        for style in moving:
            own_store.save(style.name, style.prompt, style.negative_prompt, replace=False)
            local_store.remove(style.name)
        if local.is_file() and not local_store.all():
            local.unlink()
        return len(moving)
