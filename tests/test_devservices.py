"""`phq dev up | down | status | env` on a dev dir of its own (the shared services are left alone)."""

import shutil
import subprocess
import sys

import pytest

from phq import devservices
from phq.settings import Settings

pytestmark = pytest.mark.integration


def phq_dev(action, dev_dir, **env):
    full = {"PHQ_DEV_DIR": str(dev_dir), "PHQ_DATABASE_URL": "", "PHQ_KAFKA_BOOTSTRAP": "", **env}
    import os

    return subprocess.run([sys.executable, "-m", "phq.cli", "dev", action], capture_output=True, text=True,
                          env={**os.environ, **full}, timeout=240)


def test_up_twice_status_down_status(tmp_path):
    dev_dir = tmp_path / "dev"
    try:
        first = phq_dev("up", dev_dir)
        assert first.returncode == 0, first.stderr
        state = devservices.State(dev_dir).data
        kafka_pid, pg_pid = state["kafka"]["pid"], state["postgres"]["pid"]

        second = phq_dev("up", dev_dir)
        assert second.returncode == 0, second.stderr
        assert "starting" not in second.stderr, "a second `up` must be a no-op"
        again = devservices.State(dev_dir).data
        assert (again["kafka"]["pid"], again["postgres"]["pid"]) == (kafka_pid, pg_pid)

        running = phq_dev("status", dev_dir)
        assert running.returncode == 0
        assert "kafka     running  127.0.0.1:" in running.stdout
        assert "postgres  running  postgresql+psycopg://phq@127.0.0.1:" in running.stdout

        env = phq_dev("env", dev_dir)
        assert f"export PHQ_KAFKA_BOOTSTRAP={state['kafka']['bootstrap']}" in env.stdout
        assert f"export PHQ_DATABASE_URL={state['postgres']['database_url']}" in env.stdout

        # the URL that `env` printed is ours: a later `up` with it exported must not treat it as outside
        again_up = phq_dev("up", dev_dir, PHQ_DATABASE_URL=state["postgres"]["database_url"],
                           PHQ_KAFKA_BOOTSTRAP=state["kafka"]["bootstrap"])
        assert again_up.returncode == 0 and "outside" not in phq_dev("status", dev_dir).stdout

        down = phq_dev("down", dev_dir)
        assert down.returncode == 0 and "stopped: kafka, postgres" in down.stderr
        assert not devservices.pid_alive(kafka_pid) and not devservices.pid_alive(pg_pid)

        stopped = phq_dev("status", dev_dir)
        assert stopped.returncode == 3
        assert "kafka     stopped" in stopped.stdout and "postgres  stopped" in stopped.stdout
        assert phq_dev("env", dev_dir).returncode == 3
    finally:
        devservices.down(Settings(dev_dir=str(dev_dir), database_url="", kafka_bootstrap=""))
        shutil.rmtree(devservices.pg_home(dev_dir), ignore_errors=True)


def test_down_leaves_an_outside_postgres_alone(tmp_path, dev_services):
    """With PHQ_DATABASE_URL pointing elsewhere, `up` starts no Postgres and `down` stops none."""
    settings = Settings(dev_dir=str(tmp_path / "dev"), database_url=dev_services["database_url"],
                        kafka_bootstrap=dev_services["kafka_bootstrap"])
    found = devservices.up(settings)
    assert found == dev_services
    assert set(devservices.State(tmp_path / "dev").data) <= {"id_hash_key"}, "no service recorded as ours"
    assert devservices.down(settings) == []
    report = devservices.status(settings)
    assert report["postgres"]["note"].startswith("outside") and report["kafka"]["note"].startswith("outside")
