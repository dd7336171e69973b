"""A shadow step's workspace and the effects it records."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shadow_dagster.errors import ShadowDagsterError


class PromotionRefused(ShadowDagsterError, RuntimeError):
    """A live object changed since the shadow step read it (or the shadow copy is gone): recompute."""


@dataclass(frozen=True)
class Effect:
    """One live object a shadow step changed. `target` names it in live storage, `source` the shadow
    copy; `before` / `after` are fingerprints (None: absent before / deleted by the step)."""

    kind: str
    target: dict[str, Any]
    source: dict[str, Any]
    before: str | None
    after: str | None

    def describe(self) -> str:
        what = ".".join(str(self.target[k]) for k in ("schema", "table") if k in self.target) or self.target.get("path", "")
        where = self.target.get("database") or _without_password(self.target.get("url")) or ""
        return f"{self.kind} {what}" + (f" in {where}" if where and self.kind != "file" else "")


def _without_password(url: str | None) -> str | None:
    if not url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is not printed at all
        return "a database"


def slug(text: str) -> str:
    """A short, filesystem-safe name derived from `text`."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Environment(Protocol):
    """Shadow copy of one live store for one shadow run, shared by the run's steps (a step reads what
    an earlier step of the run wrote). Each step brackets its use with `begin_step` / `end_step`;
    `end_step` copies what the step changed into the step's outbox and returns the effects."""

    def begin_step(self) -> None: ...

    def end_step(self, outbox: Path) -> list[Effect]: ...


@dataclass
class RunShadow:
    """The environments of one shadow run, under `root`."""

    root: Path
    environments: dict[tuple[str, str], Environment] = field(default_factory=dict)

    def environment(self, kind: str, live_name: str, factory) -> Environment:
        key = (kind, live_name)
        if key not in self.environments:
            directory = self.root / "envs" / kind / slug(live_name)
            directory.mkdir(parents=True, exist_ok=True)
            self.environments[key] = factory(directory)
        return self.environments[key]


@dataclass
class StepWorkspace:
    """What one step of a shadow run touched; its outbox under `root` keeps its effects' content."""

    run: RunShadow
    root: Path
    touched: dict[tuple[str, str], Environment] = field(default_factory=dict)
    _effects: list[Effect] | None = None

    def environment(self, kind: str, live_name: str, factory) -> Any:
        """The run's environment for one live store, with this step's use begun."""
        if self._effects is not None:
            raise RuntimeError("the step has finished; its workspace is closed")
        key = (kind, live_name)
        if key not in self.touched:
            env = self.run.environment(kind, live_name, factory)
            env.begin_step()
            self.touched[key] = env
        return self.touched[key]

    def effects(self) -> list[Effect]:
        """The step's effects (computed once, when the step's body has returned)."""
        if self._effects is None:
            for env in self.touched.values():
                if hasattr(env, "unpromotable"):
                    env.unpromotable = []   # this step's reasons only
            self._effects = [e for (kind, name), env in self.touched.items()
                             for e in env.end_step(self.root / kind / slug(name))]
        return self._effects

    def unpromotable(self) -> list[str]:
        """Why the step's effects cannot be promoted (changes the environments do not carry)."""
        self.effects()
        return [r for env in self.touched.values() for r in getattr(env, "unpromotable", ())]

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_current: contextvars.ContextVar[StepWorkspace | None] = contextvars.ContextVar("shadow_dagster_workspace",
                                                                                default=None)
_runs: dict[str, RunShadow] = {}
_lock = threading.Lock()


def current_workspace() -> StepWorkspace | None:
    """The workspace of the shadow step now executing in this context, else None."""
    return _current.get()


@contextlib.contextmanager
def open_workspace(run_root: Path, step_key: str):
    """While open, shadow-aware resources used by step `step_key` write into the shadow run's
    environments under `run_root`."""
    with _lock:
        run = _runs.setdefault(str(run_root), RunShadow(Path(run_root)))
    workspace = StepWorkspace(run, Path(run_root) / "steps" / slug(step_key))
    token = _current.set(workspace)
    try:
        yield workspace
    finally:
        _current.reset(token)


def close_run(run_root: Path) -> None:
    """The shadow run has ended: drop its environments' copies (steps' outboxes stay for reuse)."""
    with _lock:
        run = _runs.pop(str(run_root), None)
    for env in (run.environments.values() if run is not None else ()):
        close = getattr(env, "close", None)   # copies that live outside the run's folder
        if close is not None:
            close()
    shutil.rmtree(Path(run_root) / "envs", ignore_errors=True)
