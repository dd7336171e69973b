"""docker/ cannot run here, so validate its files: compose, references, Dockerfile, instance config."""

import glob
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def _dockerfile_instructions():
    """(instruction, args) pairs of docker/Dockerfile, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _copies(context: Path):
    """COPY sources of the Dockerfile (globbed in the build context) with their destinations."""
    out = []
    for instruction, args in _dockerfile_instructions():
        if instruction == "COPY":
            *sources, dest = shlex.split(args)
            out.append(([s for s in sources if not s.startswith("--")], dest))
    return out


def test_compose_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    assert services["postgres"]["image"].startswith("timescale/timescaledb:")
    commands = {name: services[name]["command"] for name in ("code", "webserver", "daemon")}
    assert commands["code"][:3] == ["dagster", "code-server", "start"]
    assert commands["webserver"][0] == "dagster-webserver"
    assert commands["daemon"][:2] == ["dagster-daemon", "run"]
    for name in ("code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert {"DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_DB", "SHADOW_DAGSTER_STORE_URL"} <= set(env)
        assert services[name]["image"] == services["code"]["image"]
    assert "3000:3000" in services["webserver"]["ports"]


def test_every_referenced_file_exists(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    for sources, _dest in _copies(ROOT):          # docker's rule: literal sources must exist,
        matched = 0                                   # a wildcard may match nothing, not all of them
        for source in sources:
            found = glob.glob(str(ROOT / source))
            assert found or glob.has_magic(source), f"Dockerfile copies missing {source}"
            matched += len(found)
        assert matched, f"COPY {sources} matches no file"


def test_workspace_points_at_the_code_service(compose):
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    command = compose["services"]["code"]["command"]
    assert server["host"] == "code" and "code" in compose["services"]
    assert str(server["port"]) == command[command.index("-p") + 1]
    assert server["location_name"] == command[command.index("--location-name") + 1]
    for name in ("webserver", "daemon"):                 # the relative path resolves in the image
        workdir = [a for i, a in _dockerfile_instructions() if i == "WORKDIR"][-1]
        path = compose["services"][name]["command"][compose["services"][name]["command"].index("-w") + 1]
        dests = {dest if dest.startswith("/") else f"{workdir}/{dest.removeprefix('./')}" for _s, dest in _copies(ROOT)}
        assert f"{workdir}/{path}" in dests


def test_commands_use_real_cli_options(compose):
    programs = {"code": ["dagster", "code-server", "start"], "webserver": ["dagster-webserver"],
                "daemon": ["dagster-daemon", "run"]}
    for name, program in programs.items():
        command = compose["services"][name]["command"]
        assert command[:len(program)] == program
        help_text = subprocess.run([str(BIN / program[0]), *program[1:], "--help"], capture_output=True,
                                   text=True, timeout=60).stdout
        for option in (a for a in command if a.startswith("-")):
            assert f" {option}," in help_text or f" {option} " in help_text, f"{name}: no option {option}"


def test_dockerfile_installs_the_package(tmp_path):
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    install = next(i for i, (ins, args) in enumerate(instructions) if ins == "RUN" and "pip install" in args)
    targets = shlex.split(instructions[install][1])[2:]
    assert targets == [".[ui]", "./examples/demo"], targets       # the library with its UI, and the example
    # rebuild the image's source tree up to `pip install` and let setuptools build both packages' metadata
    copied_before = []
    for ins, args in instructions[:install]:
        if ins == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                for match in glob.glob(str(ROOT / source)):
                    target = tmp_path / dest.removeprefix("./") / (Path(match).name if dest.endswith("/") else "")
                    if Path(match).is_dir():
                        shutil.copytree(match, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(match, target)
                    copied_before.append(source)
    assert {"pyproject.toml", "shadow_dagster", "examples/demo"} <= set(copied_before), copied_before
    infos = {}
    for project in (".", "examples/demo"):
        eggs = tmp_path / "eggs" / project
        eggs.mkdir(parents=True)
        done = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info",
                               "--egg-base", str(eggs)], cwd=tmp_path / project, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        (infos[project],) = eggs.glob("*.egg-info")
    assert "shadow_dagster/tags.py" in (infos["."] / "SOURCES.txt").read_text()
    assert "demo_project/definitions.py" in (infos["examples/demo"] / "SOURCES.txt").read_text()
    requires = (infos["."] / "requires.txt").read_text()
    assert "dagster-postgres" in requires and "[ui]\ndagster-webserver" in requires
    later = [args for ins, args in instructions[install:] if ins == "COPY"]
    assert any("definitions.py" in a for a in later) and any("docker/dagster.yaml" in a for a in later)


@pytest.mark.postgres
def test_docker_dagster_yaml_loads_against_postgres(pg_url, compose, tmp_path, monkeypatch):
    import sqlalchemy as sa
    from dagster import DagsterInstance, job, op
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
    from sqlalchemy.engine import make_url

    from shadow_dagster.store.engine import normalise_url

    # the signal store URL of the containers names the same database as dagster.yaml's variables
    env = compose["services"]["code"]["environment"]
    store = make_url(env["SHADOW_DAGSTER_STORE_URL"])
    assert (store.host, str(store.port), store.username, store.password, store.database) == (
        env["DAGSTER_POSTGRES_HOST"], env["DAGSTER_POSTGRES_PORT"], env["DAGSTER_POSTGRES_USER"],
        env["DAGSTER_POSTGRES_PASSWORD"], env["DAGSTER_POSTGRES_DB"])
    normalise_url(env["SHADOW_DAGSTER_STORE_URL"])

    server = make_url(normalise_url(pg_url))
    db_name = "docker_cfg_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{db_name}"'))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DOCKER / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in {"HOST": server.host, "PORT": str(server.port or 5432), "USER": server.username,
                       "PASSWORD": server.password or "", "DB": db_name}.items():
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{key}", value)

    @op
    def hello() -> int:
        return 1

    @job
    def docker_config_probe():
        hello()

    try:
        instance = DagsterInstance.get()
        try:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            result = docker_config_probe.execute_in_process(instance=instance)
            assert result.success
            assert [s.step_key for s in instance.get_run_step_stats(result.run_id)] == ["hello"]
            assert instance.get_run_records(limit=5)[0].dagster_run.run_id == result.run_id
            assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
        finally:
            instance.dispose()
        with sa.create_engine(server.set(database=db_name)).connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        assert {"runs", "event_logs", "jobs"} <= tables          # dagster's tables in that database
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{db_name}" with (force)'))
        admin.dispose()
