"""File shadow environment: copy-on-write paths under a shadow root.

In a shadow step `path("reports/summary.csv")` resolves under the step's shadow root; the first
time a path is handed out, the live file (or directory) there is copied in, so reads see live data
and in-place appends change only the copy. The step's effects are the files whose content differs
from the live file they were copied from (or that are new, or that it deleted). Promotion moves
each into live storage by an atomic rename, after checking the live file is still the one copied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from shadow_dagster.envs.workspace import Effect, PromotionRefused
from shadow_dagster.speculation.atomic import TEMP_PREFIX, fsync_dir

KIND = "file"
_CHUNK = 1 << 20


def file_hash(path: str | os.PathLike) -> str | None:
    """sha256 of the file's bytes, None when there is no file."""
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    digest = hashlib.sha256()
    with fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def relative_parts(base_dir: str | os.PathLike, parts) -> Path:
    """`parts` joined as a path relative to `base_dir`; raises ValueError for one that escapes it."""
    rel = Path(*[os.fspath(p) for p in parts]) if parts else Path()
    if rel.is_absolute():
        rel = Path(os.path.relpath(rel, base_dir))
    normalized = Path(os.path.normpath(rel))
    if normalized.parts and normalized.parts[0] == "..":
        raise ValueError(f"path {os.fspath(rel)!r} is outside base_dir {os.fspath(base_dir)!r}")
    return normalized


class FilesEnvironment:
    """The shadow run's copy-on-write view of one live directory tree, shared by its steps."""

    def __init__(self, directory: Path, live_root: str):
        self.live_root = Path(os.path.abspath(live_root))
        self.root = directory / "tree"
        self.root.mkdir(parents=True, exist_ok=True)
        self.copied: dict[str, str | None] = {}   # relative path -> hash of the live file copied in
        self.step_before: dict[str, str | None] = {}

    def path(self, rel: Path) -> Path:
        """The shadow path for `rel`; every live file at or under it is copied in the first time it
        is handed out (never again: a file the run deleted stays deleted), so the shadow tree shows
        all of live under any path it hands out."""
        live = self.live_root / rel
        if live.is_file():
            self._copy_in(rel)
        elif live.is_dir():
            for sub in sorted(p for p in live.rglob("*") if p.is_file() and not p.is_symlink()):
                self._copy_in(sub.relative_to(self.live_root))
        return self.root / rel

    def _copy_in(self, rel: Path) -> None:
        key = rel.as_posix()
        if key in self.copied or (self.root / rel).exists():
            return
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.live_root / rel, self.root / rel)
        self.copied[key] = file_hash(self.root / rel)
        self.step_before.setdefault(key, self.copied[key])   # the step found the live file

    def _present(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def begin_step(self) -> None:
        self.step_before = {key: file_hash(self.root / key) for key in self._present()}

    def end_step(self, outbox: Path) -> list[Effect]:
        out = []
        present = self._present()
        for key in sorted(present | set(self.step_before)):
            # a file neither in the tree when the step began nor copied in was absent from live when
            # its path was handed out (every live file under a handed-out path is copied in)
            before = self.step_before.get(key)
            after = file_hash(self.root / key) if key in present else None
            if after == before:
                continue
            source = outbox / "files" / key
            if after is not None:
                source.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.root / key, source)
            out.append(Effect(KIND, {"root": str(self.live_root), "path": key}, {"path": str(source)}, before, after))
        return out


def _live(e: Effect) -> Path:
    return Path(e.target["root"]) / e.target["path"]


def check(effects: list[Effect]) -> None:
    for e in effects:
        if file_hash(_live(e)) != e.before:
            raise PromotionRefused(f"live file {_live(e)} changed since the shadow step copied it")
        if e.after is not None and file_hash(e.source["path"]) != e.after:
            raise PromotionRefused(f"the shadow copy of {_live(e)} is gone or changed")


def promote(effects: list[Effect]) -> None:
    """Move each changed file into live storage by an atomic rename (checked first, all of them)."""
    check(effects)
    for e in effects:
        live = _live(e)
        if e.after is None:
            live.unlink(missing_ok=True)
            continue
        live.parent.mkdir(parents=True, exist_ok=True)
        tmp = live.parent / f"{TEMP_PREFIX}{live.name}.{os.getpid()}"
        shutil.copyfile(e.source["path"], tmp)   # a copy: the shadow store may sit on another device
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if file_hash(tmp) != e.after:
            tmp.unlink(missing_ok=True)
            raise PromotionRefused(f"the shadow copy of {live} changed while it was promoted")
        os.replace(tmp, live)
        fsync_dir(live.parent)
