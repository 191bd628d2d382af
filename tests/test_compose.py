"""docker-compose.yml can't run here (no Docker engine): it must at least parse and call real commands."""

from pathlib import Path

import yaml

from cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_role():
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "stream", "score-worker", "notify", "api"} <= set(services)


def test_every_phq_service_runs_a_real_phq_command():
    for name, svc in compose()["services"].items():
        if svc.get("image", "").startswith("phq-monitor"):
            command = svc["command"][0]
            assert command in COMMANDS, f"service {name} runs `phq {command}`, which is not a phq command"


def test_score_worker_reserves_a_gpu():
    devices = compose()["services"]["score-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_phq_services_get_the_service_addresses():
    for name in ("stream", "score-worker", "notify", "api"):
        env = compose()["services"][name]["environment"]
        assert env["PHQ_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["PHQ_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("cli", "phq", "stream", "scoring", "training", "care", "migrations"):
        assert f"COPY {package} ./{package}" in dockerfile
