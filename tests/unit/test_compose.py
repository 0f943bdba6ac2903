"""docker-compose.yml stays correct without a Docker engine: structure, healthchecks, dependency
order, and every BOUNDARIES_* variable is a real setting."""

from pathlib import Path

import yaml

from config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


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
            expected = "service_completed_successfully" if dep == "migrate" else "service_healthy"
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
