"""docker-compose.yml stays correct without a Docker engine: structure, healthchecks, dependency
order, named volumes, the bucket one-shot, .dockerignore, and every BOUNDARIES_* variable is a real setting.
The worker's healthcheck is run against a real worker in tests/integration/test_compose_worker_healthcheck.py."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


ONE_SHOTS = {"migrate", "createbucket"}  # run to completion; the rest run until stopped


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def unescape(command: str) -> str:
    """What the container's shell receives: compose turns ``$$`` into ``$``. A lone ``$`` would be
    replaced by compose itself from the deploying shell's variables (empty there), so none may be left."""
    lone = re.sub(r"\$\$", "", command)
    assert "$" not in lone, f"unescaped $ in {command!r}: compose would interpolate it from the host"
    return command.replace("$$", "$")


def healthcheck_shell_command(service: str) -> str:
    """The healthcheck of ``service`` as the command line ``sh -c`` runs (it must be CMD-SHELL)."""
    test = _compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and len(test) == 2, f"{service}: {test}"
    return unescape(test[1])


def test_every_service_the_system_needs_is_defined_with_a_healthcheck():
    services = _compose()["services"]

    for name in ("redis", "postgres", "minio", "producer", "worker"):
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_dependencies_exist_and_wait_for_health():
    services = _compose()["services"]

    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOTS else "service_healthy"
            assert cond["condition"] == expected, (name, dep)


def test_app_environment_names_only_real_settings_and_parses():
    services = _compose()["services"]
    env = services["worker"]["environment"]
    fields = {f"BOUNDARIES_{n.upper()}" for n in Settings.model_fields}

    unknown = set(env) - fields
    assert not unknown, f"docker-compose sets unknown settings {unknown}"
    values = {k[len("BOUNDARIES_"):].lower(): v for k, v in env.items() if "${" not in str(v)}
    s = Settings(**values)
    assert s.storage_backend == "s3" and s.redis_url.startswith("redis://redis")


def test_app_commands_are_cli_commands():
    from boundaries_cli.main import build_parser

    parser = build_parser()
    for name in ("producer", "worker", "migrate", "reconciler", "sweeper"):
        cmd = _compose()["services"][name]["command"]
        assert cmd[0] == "boundaries"
        parser.parse_args(cmd[1:])  # exits (SystemExit) on an unknown command or flag


def test_every_long_running_service_has_a_healthcheck_and_one_shots_do_not_restart():
    services = _compose()["services"]

    assert ONE_SHOTS <= set(services)
    for name, svc in services.items():
        if name in ONE_SHOTS:
            assert svc.get("restart", "no") == "no", name
        else:
            assert "healthcheck" in svc, f"{name} runs until stopped but has no healthcheck"


def test_healthchecks_that_read_variables_run_in_a_shell():
    # exec form (["CMD", ...]) has no shell: "celery@$HOSTNAME" reached celery verbatim ("No nodes replied")
    for name, svc in _compose()["services"].items():
        test = svc.get("healthcheck", {}).get("test", [])
        if any("$" in part for part in test):
            assert test[0] == "CMD-SHELL", f"{name}: {test}"
            unescape(test[1])


def test_stateful_services_keep_their_data_in_named_volumes():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, path in (("redis", "/data"), ("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        mounts = dict(v.split(":", 1) for v in compose["services"][name].get("volumes", []))
        by_path = {p: vol for vol, p in mounts.items()}
        assert path in by_path, f"{name} does not mount {path}"
        assert by_path[path] in declared, f"{name}: {by_path[path]} is not a named volume"
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_a_one_shot_creates_the_bucket_the_app_uses_before_worker_and_producer_start():
    services = _compose()["services"]
    mc = services["createbucket"]
    command = unescape(" ".join(mc["command"]))

    assert mc["image"].startswith("minio/mc:RELEASE.")
    assert mc["environment"] == services["worker"]["environment"]  # same endpoint, keys and bucket as the app
    assert 'mc alias set store "$BOUNDARIES_S3_ENDPOINT_URL"' in command
    assert 'mc mb --ignore-existing "store/$BOUNDARIES_S3_BUCKET"' in command
    assert mc["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("worker", "producer"):
        assert services[name]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully", name


def test_flower_watches_the_apps_broker():
    services = _compose()["services"]
    flower = services["flower"]

    assert re.fullmatch(r"mher/flower:\d+\.\d+\.\d+", flower["image"]), flower["image"]
    assert f"--broker={services['worker']['environment']['BOUNDARIES_REDIS_URL']}" in flower["command"]


def test_every_image_is_pinned():
    for name, svc in _compose()["services"].items():
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: {svc['image']}"


def test_every_boundaries_name_in_the_file_is_a_real_setting():
    fields = {f"BOUNDARIES_{n.upper()}" for n in Settings.model_fields}
    named = set(re.findall(r"BOUNDARIES_[A-Z0-9_]+", (REPO / "docker-compose.yml").read_text()))

    assert named, "no BOUNDARIES_* names found"
    assert not named - fields, f"not settings: {named - fields}"


def test_dockerignore_keeps_the_build_context_small_and_the_dockerfile_inputs_in():
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {p.rstrip("/") for p in line.split()[1:-1]}

    assert {".venv", ".git", ".boundaries"} <= ignored
    assert copied and not copied & ignored, copied & ignored


@pytest.mark.parametrize("service", ["reconciler", "sweeper"])
def test_loop_healthchecks_pass_on_a_fresh_liveness_file_and_fail_on_an_old_or_missing_one(service, tmp_path):
    svc = _compose()["services"][service]
    command = healthcheck_shell_command(service)
    limit = int(re.search(r"-lt (\d+)", command).group(1))
    env_values = {k[len("BOUNDARIES_"):].lower(): v for k, v in svc["environment"].items() if "${" not in str(v)}
    settings = Settings(**env_values)
    interval = (min(settings.retry_poll_interval_s, settings.reconcile_interval_s) if service == "reconciler"
                else settings.heartbeat_stale_s)  # as boundaries_cli/ops.py loops
    assert settings.liveness_file is not None and limit >= 2 * interval, (limit, interval)

    f = tmp_path / "alive"

    def check() -> int:
        env = {**os.environ, "BOUNDARIES_LIVENESS_FILE": str(f)}
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True).returncode

    assert check() != 0  # no pass yet
    f.touch()
    assert check() == 0
    old = time.time() - limit - 5
    os.utime(f, (old, old))
    assert check() != 0


def test_the_bucket_command_passes_the_apps_endpoint_keys_and_bucket_to_mc(tmp_path):
    # a stand-in `mc` that records its arguments: the shell line's quoting and variables, not MinIO
    services = _compose()["services"]
    mc = services["createbucket"]
    (tmp_path / "mc").write_text('#!/bin/sh\necho "$@" >> "$MC_LOG"\n')
    (tmp_path / "mc").chmod(0o755)
    app_env = {k: str(v) for k, v in mc["environment"].items() if "${" not in str(v)}
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "MC_LOG": str(tmp_path / "log"), **app_env}

    assert mc["entrypoint"] == ["/bin/sh", "-c"] and len(mc["command"]) == 1
    subprocess.run(["sh", "-c", unescape(mc["command"][0])], env=env, check=True)

    assert (tmp_path / "log").read_text().splitlines() == [
        f"alias set store {app_env['BOUNDARIES_S3_ENDPOINT_URL']} {app_env['BOUNDARIES_S3_ACCESS_KEY_ID']} "
        f"{app_env['BOUNDARIES_S3_SECRET_ACCESS_KEY']}",
        f"mb --ignore-existing store/{app_env['BOUNDARIES_S3_BUCKET']}",
    ]
