"""`phq demo` (CONTRACT v2 section 5) in a terminal: the pipeline scores synthetic users without
training a model, then the dashboard serves exactly those users to the printed token until Ctrl-C."""

from __future__ import annotations

import os
import pty
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_of(stream) -> queue.Queue:
    out: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [out.put(line) for line in iter(stream.readline, "")], daemon=True).start()
    return out


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the demo's dashboard did not answer at {url}")


def test_the_demo_in_a_terminal_serves_its_users_on_the_dashboard_until_ctrl_c(phq_env, tmp_path):
    port = free_port()
    terminal, its_end = pty.openpty()  # the demo's stdin is a terminal, as for a person running it
    with open(tmp_path / "demo.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "demo", "--users", "2", "--timeout", "240"],
                                stdin=its_end, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
                                env=phq_env(PHQ_API_PORT=str(port), PHQ_LOG_LEVEL="WARNING"))
    os.close(its_end)
    printed, token = [], None
    try:
        out = lines_of(proc.stdout)
        deadline = time.monotonic() + 300
        while token is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = out.get(timeout=1).rstrip("\n")
            except queue.Empty:
                continue
            printed.append(line)
            token = line if line.startswith("phq_") else None
        assert token, f"no token printed; stdout {printed}; stderr {(tmp_path / 'demo.err').read_text()[-3000:]}"
        assert any(f"http://127.0.0.1:{port}/" in line for line in printed)
        assert printed[0].startswith("SYNTHETIC DATA"), "the scores come first, labelled synthetic"
        scored = {line.split(":")[0] for line in printed if ": latest " in line}

        wait_for_server(f"http://127.0.0.1:{port}/healthz", proc)
        headers = {"Authorization": f"Bearer {token}"}
        users = httpx.get(f"http://127.0.0.1:{port}/v1/users", headers=headers, timeout=10).json()["items"]
        assert {u["user_id"] for u in users} == scored and len(scored) == 2
        assert all(u["latest"] is not None for u in users), "the dashboard shows the scores just printed"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(terminal)
    assert not list(Path(phq_env()["PHQ_MODEL_DIR"]).glob("demo-*")), "the demo trained no model"
