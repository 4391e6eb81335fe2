"""`ground run --ray-address` joining a real Ray cluster that uses token
authentication (what `ray start --head` does since Ray 2.59): without the
token the run is bad input naming the cure, within Ray's own retries
(about 20 s over the GCS address, 30 s over ray://); with it the run
completes on the cluster's workers, over both.

The cluster is a Ray head started in a subprocess of this test (ray.init
with RAY_AUTH_MODE=token and a token of the test's own), not `ray start`:
`ray stop` would stop every Ray on the machine, another test's too."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest

from bench.bench_fleet import fleet_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAD = """
import subprocess, sys
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
gcs = ray.get_runtime_context().gcs_address
# Ray Client's server for ray:// addresses, in its legacy mode (one server on
# this cluster): the proxy mode `ray start` runs needs the runtime-env agent
# that only `ray start` starts. The client's side of ray:// is the same.
client = subprocess.Popen([sys.executable, "-m", "ray.util.client.server", "--address", gcs, "--host", "127.0.0.1",
                           "--port", sys.argv[1], "--mode", "legacy"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
print(gcs, flush=True)
sys.stdin.read()  # until the test closes it
client.terminate()
client.wait(30)
ray.shutdown()
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(extra)
    return env


@pytest.mark.timeout(300)
def test_joining_a_cluster_with_token_authentication_names_the_token_and_runs_with_it(tmp_path):
    pytest.importorskip("ray")
    token = secrets.token_hex(32)
    # a session of its own: Ray's process reaper signals its whole process group when its stdin ends
    client_port = _free_port()
    head = subprocess.Popen([sys.executable, "-c", HEAD, str(client_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=str(tmp_path), start_new_session=True,
                            env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token))
    try:
        address = head.stdout.readline().strip()
        assert address.count(":") == 1, "the head did not start: %r" % address
        path = tmp_path / "f.yaml"
        path.write_text(fleet_text(nodes=40, cluster_size=10, duration_s=10))

        def run(out, at=address, **env):
            return subprocess.run([sys.executable, "-m", "ground", "run", str(path), "--ray-address", at, "-q",
                                   "--out", str(tmp_path / out)], cwd=REPO, capture_output=True, text=True,
                                  timeout=180, env=_env(**env))

        r = run("no-token")
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Ray could not join the cluster there" in r.stderr and "RAY_AUTH_MODE=token" in r.stderr, r.stderr[-2000:]
        r = run("token", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert (tmp_path / "token" / "fleet.json").exists() and "PASS" in r.stdout

        client = "ray://127.0.0.1:%d" % client_port
        assert _listening(client_port), "the Ray Client server did not start"
        r = run("client-no-token", client)  # Ray's client only times out (30 s): the hint must still come
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Ray could not join the cluster there" in r.stderr and "RAY_AUTH_MODE=token" in r.stderr, r.stderr[-2000:]
        r = run("client-token", client, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert (tmp_path / "client-token" / "fleet.json").exists() and "PASS" in r.stdout
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the head, its Ray Client server and Ray's own processes


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False
