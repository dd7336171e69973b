"""Load a code location's repository in process, as `dagster dev -m/-f` or a bare `dagster dev`
in a project folder finds it, so the CLI knows each job's partitions definition."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from shadow_dagster.errors import ShadowDagsterUserError


class CodeLocationError(ShadowDagsterUserError):
    """The code location named on the command line (or in pyproject.toml) does not load."""


@dataclass(frozen=True)
class Target:
    """A module or a python file holding one `Definitions` (or `@definitions` function)."""

    module_name: str | None = None
    python_file: str | None = None
    working_directory: str | None = None

    def describe(self) -> str:
        return f"-m {self.module_name}" if self.module_name else f"-f {self.python_file}"


def from_pyproject(folder: str | os.PathLike) -> Target | None:
    """The code location `dagster dev` would load in `folder`: `[tool.dagster] module_name` or a
    `dg` project's `<root_module>.definitions`; None when the folder declares neither."""
    path = Path(folder) / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        tool = tomllib.loads(path.read_text()).get("tool", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CodeLocationError(f"cannot read {path}: {exc}") from None
    wd = str(Path(folder).resolve())
    dagster = tool.get("dagster", {})
    if dagster.get("module_name"):
        return Target(module_name=dagster["module_name"],
                      working_directory=str((Path(wd) / dagster.get("working_directory", ".")).resolve()))
    project = tool.get("dg", {}).get("project", {})
    if project.get("root_module"):
        target = project.get("code_location_target_module", f"{project['root_module']}.definitions")
        return Target(module_name=target, working_directory=wd)
    return None


def resolve_target(module_name: str | None, python_file: str | None, working_directory: str | None,
                   cwd: str | os.PathLike = ".") -> Target | None:
    """The target named by `-m`/`-f`, else the one pyproject.toml in `cwd` declares, else None."""
    if module_name and python_file:
        raise CodeLocationError("give either -m/--module-name or -f/--python-file, not both")
    if python_file and not Path(python_file).is_file():
        raise CodeLocationError(f"-f {python_file}: no such file")
    if module_name or python_file:
        return Target(module_name, python_file and str(Path(python_file).resolve()),
                      str(Path(working_directory or cwd).resolve()))
    return from_pyproject(cwd)


def load_repository(target: Target):
    """The RepositoryDefinition `target` holds, with one clear line when it does not load."""
    from shadow_dagster.dagster.compat import (
        CodePointer,
        initialize_repository_def_from_pointer,
        loadable_targets_from_python_file,
        loadable_targets_from_python_module,
    )

    try:
        if target.module_name:
            found = loadable_targets_from_python_module(target.module_name, target.working_directory)
        else:
            found = loadable_targets_from_python_file(target.python_file, target.working_directory)
        if len(found) != 1:
            raise CodeLocationError(f"code location {target.describe()} holds {len(found)} Definitions, "
                                    "expected one")
        attr = found[0].attribute
        pointer = (CodePointer.from_module(target.module_name, attr, target.working_directory)
                   if target.module_name else
                   CodePointer.from_python_file(target.python_file, attr, target.working_directory))
        return initialize_repository_def_from_pointer(pointer)
    except CodeLocationError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: any error it raises is the user's to fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CodeLocationError(f"code location {target.describe()} does not load: "
                                f"{type(exc).__name__}: {first}") from None
