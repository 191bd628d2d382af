"""`phq dev up | down | status | env`: a real single-node Kafka (KRaft) and PostgreSQL, without Docker.

Kafka's jars come from Maven Central through Maven into a cache dir; PostgreSQL is Debian's
package, run as the `postgres` system user in a data dir of its own. What `up` started is
recorded in `<PHQ_DEV_DIR>/state.json`, and `down` stops only that.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from phq.db import safe_url
from phq.settings import ROLES, Settings

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent / "dev"
CACHE = Path(os.environ.get("PHQ_CACHE_DIR", Path.home() / ".cache" / "phq-monitor"))
BROKER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024  # fits the largest request (transcript cap + JSON overhead)


def say(msg: str) -> None:
    print(f"phq dev: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- state


class State:
    def __init__(self, dev_dir: Path):
        self.dir = dev_dir
        self.path = dev_dir / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.touch(mode=0o600)  # holds the dev hash key: readable by its owner only
        tmp.chmod(0o600)
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def ensure_hash_key(self) -> None:
        """The dev services' secret for keyed user-id hashes (PHQ_ID_HASH_KEY overrides it)."""
        if not self.data.get("id_hash_key"):
            self.data["id_hash_key"] = secrets.token_hex(32)
            self.save()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    hint = f"; see {log}" if log else ""
    raise SystemExit(f"phq dev: {what} did not become ready within {timeout_s:.0f}s{hint}")


# ---------------------------------------------------------------- Kafka


def kafka_jars() -> Path:
    """The broker's jars, fetched once with Maven into the cache dir."""
    jars = CACHE / f"kafka-{KAFKA_VERSION}"
    if (jars / ".complete").exists():
        return jars
    if not shutil.which("mvn") or not shutil.which("java"):
        raise SystemExit("phq dev: Kafka needs `java` (17+) and `mvn` on PATH; install a JDK and Maven first")
    say(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {jars}")
    tmp = jars.with_name(jars.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(HERE / "kafka-pom.xml"), f"-Dkafka.version={KAFKA_VERSION}",
         "dependency:copy-dependencies", f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
        check=True,
    )
    shutil.rmtree(jars, ignore_errors=True)
    tmp.rename(jars)
    (jars / ".complete").touch()
    return jars


def kafka_java(jars: Path, main: str, *args: str, log_config: Path | None = None, heap: str = "256m") -> list[str]:
    cmd = ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    if log_config:
        cmd.append(f"-Dlog4j2.configurationFile={log_config}")
    return cmd + ["-cp", f"{jars}/*", main, *args]


def kafka_up(state: State) -> str:
    info = state.data.get("kafka", {})
    if pid_alive(info.get("pid")) and port_open(info["port"]):
        return info["bootstrap"]
    jars = kafka_jars()
    base = state.dir / "kafka"
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    port = info.get("port") if info.get("port") and not port_open(info["port"]) else free_port()
    controller = free_port()
    props = base / "server.properties"
    props.write_text((HERE / "kafka-server.properties").read_text().format(
        port=port, controller=controller, data=data, max_bytes=BROKER_MAX_MESSAGE_BYTES,
    ))
    log_config = base / "log4j2.properties"
    log_config.write_text((HERE / "kafka-log4j2.properties").read_text().replace("@LOG@", str(base / "server.log")))
    if not (data / "meta.properties").exists():
        shutil.rmtree(data, ignore_errors=True)
        cluster = str(uuid.uuid4().hex[:22])
        cluster_id = subprocess.run(
            kafka_java(jars, "kafka.tools.StorageTool", "random-uuid", log_config=log_config),
            check=True, capture_output=True, text=True,
        ).stdout.strip() or cluster
        subprocess.run(
            kafka_java(jars, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                       "-c", str(props), log_config=log_config),
            check=True, capture_output=True, text=True,
        )
    say(f"starting Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1:{port}")
    out = open(base / "stdout.log", "ab")
    proc = subprocess.Popen(
        kafka_java(jars, "kafka.Kafka", str(props), log_config=log_config, heap="768m"),
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    bootstrap = f"127.0.0.1:{port}"
    state.data["kafka"] = {"pid": proc.pid, "port": port, "controller_port": controller,
                           "bootstrap": bootstrap, "log": str(base / "server.log"), "version": KAFKA_VERSION}
    state.save()
    from phq.kafka_admin import broker_ready

    wait_until(lambda: proc.poll() is None and broker_ready(bootstrap), 90, "Kafka", base / "server.log")
    return bootstrap


def kafka_down(state: State) -> bool:
    info = state.data.get("kafka")
    if not info or not pid_alive(info.get("pid")):
        return False
    os.killpg(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while pid_alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.3)
    if pid_alive(info["pid"]):
        os.killpg(info["pid"], signal.SIGKILL)
    return True


# ---------------------------------------------------------------- PostgreSQL


def pg_bin() -> Path:
    """Debian's PostgreSQL binaries (installed with apt-get when missing)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit("phq dev: PostgreSQL is not installed; run `apt-get install postgresql` as root")
        say("installing Debian's postgresql package")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env, stdout=subprocess.DEVNULL)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent


def as_pg_user(cmd: list[str]) -> list[str]:
    """initdb and pg_ctl refuse root: run them as the `postgres` system user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg_home(dev_dir: Path) -> Path:
    """A data dir the postgres user can reach even when the checkout lives under /root."""
    if os.geteuid() != 0:
        return dev_dir / "postgres"
    key = hashlib.sha256(str(dev_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"phq-dev-{key}"


def pg_up(state: State) -> str:
    info = state.data.get("postgres", {})
    if info and pid_alive(info.get("pid")) and port_open(info["port"]):
        _ensure_role_and_db(info["port"])  # a cluster from before the process roles gets them too
        return info["database_url"]
    bindir = pg_bin()
    home = pg_home(state.dir)
    data, sock = home / "data", home / "sock"
    home.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(home)], check=True)
    if not (data / "PG_VERSION").exists():
        say(f"initialising a PostgreSQL data dir in {data}")
        subprocess.run(as_pg_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                   "-E", "UTF8", "--no-locale"]), check=True, stdout=subprocess.DEVNULL)
    port = info.get("port") if info.get("port") and not port_open(info["port"]) else free_port()
    log = home / "postgres.log"
    say(f"starting PostgreSQL ({bindir.parent.name}) on 127.0.0.1:{port}")
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    subprocess.run(as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
                               "-t", "60", "start"]), check=True, stdout=subprocess.DEVNULL)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    url = f"postgresql+psycopg://phq@127.0.0.1:{port}/phq"
    state.data["postgres"] = {"pid": pid, "port": port, "data": str(data), "log": str(log),
                              "bindir": str(bindir), "database_url": url, "version": bindir.parent.name}
    state.save()
    wait_until(lambda: port_open(port), 30, "PostgreSQL", log)
    _ensure_role_and_db(port)
    return url


def _ensure_role_and_db(port: int) -> None:
    """Roles as in production (README, security): `phq` owns the schema and runs migrations but is no
    superuser; each process role (phq_api, phq_worker, phq_notify) gets only migration 0004's grants."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        for role, options in [("phq", "LOGIN NOSUPERUSER CREATEDB CREATEROLE"),
                              *((f"phq_{r}", "LOGIN NOSUPERUSER") for r in ROLES)]:
            verb = "ALTER" if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() else "CREATE"
            conn.execute(f"{verb} ROLE {role} {options}")
        conn.execute("GRANT pg_signal_backend TO phq")  # tests drop their databases WITH (FORCE)
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'phq'").fetchone():
            conn.execute("CREATE DATABASE phq OWNER phq")


def pg_down(state: State) -> bool:
    info = state.data.get("postgres")
    if not info or not pid_alive(info.get("pid")):
        return False
    subprocess.run(as_pg_user([str(Path(info["bindir"]) / "pg_ctl"), "-D", info["data"], "-m", "fast", "-w",
                               "stop"]), check=False, stdout=subprocess.DEVNULL)
    return True


# ---------------------------------------------------------------- commands


def outside_database_url(settings: Settings, state: State) -> str | None:
    """PHQ_DATABASE_URL when it points at a server `up` did not start (not the URL `env` printed)."""
    url = settings.database_url
    ours = state.data.get("postgres", {}).get("database_url")
    return url if url and url != ours else None


def outside_kafka(settings: Settings, state: State) -> str | None:
    ours = state.data.get("kafka", {}).get("bootstrap")
    return settings.kafka_bootstrap if settings.kafka_bootstrap and settings.kafka_bootstrap != ours else None


def up(settings: Settings) -> dict:
    from phq.kafka_admin import ensure_topics

    state = State(Path(settings.dev_dir).resolve())
    state.ensure_hash_key()
    bootstrap = outside_kafka(settings, state) or kafka_up(state)
    url = outside_database_url(settings, state)
    if url:
        say("using the PostgreSQL at PHQ_DATABASE_URL; not starting one")
    else:
        url = pg_up(state)
    created = ensure_topics(settings, bootstrap)
    if created:
        say(f"created topics: {', '.join(sorted(created))}")
    return {"kafka_bootstrap": bootstrap, "database_url": url}


def down(settings: Settings) -> list[str]:
    state = State(Path(settings.dev_dir).resolve())
    stopped = [name for name, stop in (("kafka", kafka_down), ("postgres", pg_down)) if stop(state)]
    for name in ("kafka", "postgres"):
        if name in state.data:
            state.data[name]["pid"] = None
    if state.data:
        state.save()
    return stopped


def status(settings: Settings) -> dict:
    state = State(Path(settings.dev_dir).resolve())
    report = {}
    k = state.data.get("kafka", {})
    report["kafka"] = (
        {"running": True, "bootstrap": k["bootstrap"], "pid": k["pid"], "log": k["log"]}
        if pid_alive(k.get("pid")) and port_open(k["port"]) else {"running": False}
    )
    if outside_kafka(settings, state):
        report["kafka"] = {"running": None, "bootstrap": settings.kafka_bootstrap, "note": "outside (PHQ_KAFKA_BOOTSTRAP)"}
    p = state.data.get("postgres", {})
    report["postgres"] = (
        {"running": True, "database_url": p["database_url"], "pid": p["pid"], "data": p["data"], "log": p["log"]}
        if pid_alive(p.get("pid")) and port_open(p["port"]) else {"running": False}
    )
    if outside_database_url(settings, state):
        report["postgres"] = {"running": None, "database_url": settings.database_url, "note": "outside (PHQ_DATABASE_URL)"}
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq dev", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    settings = Settings()
    if args.action == "up":
        found = up(settings)
        say(f"ready: Kafka at {found['kafka_bootstrap']}, PostgreSQL at {safe_url(found['database_url'])}")
    elif args.action == "down":
        stopped = down(settings)
        say(f"stopped: {', '.join(stopped)}" if stopped else "nothing that `phq dev up` started is running")
    elif args.action == "status":
        report = status(settings)
        for name, info in report.items():
            where = safe_url(info["database_url"]) if info.get("database_url") else info.get("bootstrap", "")
            word = {True: "running", False: "stopped", None: "outside"}[info["running"]]
            print(f"{name:<9} {word:<8} {where}".rstrip())
        return 0 if all(i["running"] is not False for i in report.values()) else 3
    else:
        report = status(settings)
        if report["kafka"]["running"] is False or report["postgres"]["running"] is False:
            say("the dev services are not running; run `phq dev up` first")
            return 3
        print(f"export PHQ_KAFKA_BOOTSTRAP={report['kafka']['bootstrap']}")
        print(f"export PHQ_DATABASE_URL={report['postgres']['database_url']}")
    return 0
