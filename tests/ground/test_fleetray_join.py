"""`ground run --ray-address` joining a real Ray cluster that uses token
authentication (what `ray start --head` does since Ray 2.59): without the
token the run is bad input naming the cure, within Ray's own retries
(about 20 s); with it the run completes on the cluster's workers.

The cluster is a Ray head started in a subprocess of this test (ray.init
with RAY_AUTH_MODE=token and a token of the test's own), not `ray start`:
`ray stop` would stop every Ray on the machine, another test's too."""

import os
import secrets
import subprocess
import sys

import pytest

from bench.bench_fleet import fleet_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAD = """
import sys
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes it
ray.shutdown()
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(extra)
    return env


@pytest.mark.timeout(240)
def test_joining_a_cluster_with_token_authentication_names_the_token_and_runs_with_it(tmp_path):
    pytest.importorskip("ray")
    token = secrets.token_hex(32)
    # a session of its own: Ray's process reaper signals its whole process group when its stdin ends
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=str(tmp_path), start_new_session=True,
                            env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token))
    try:
        address = head.stdout.readline().strip()
        assert address.count(":") == 1, "the head did not start: %r" % address
        path = tmp_path / "f.yaml"
        path.write_text(fleet_text(nodes=40, cluster_size=10, duration_s=10))

        def run(out, **env):
            return subprocess.run([sys.executable, "-m", "ground", "run", str(path), "--ray-address", address, "-q",
                                   "--out", str(tmp_path / out)], cwd=REPO, capture_output=True, text=True,
                                  timeout=180, env=_env(**env))

        r = run("no-token")
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Ray could not join the cluster there" in r.stderr and "RAY_AUTH_MODE=token" in r.stderr, r.stderr[-2000:]
        r = run("token", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert (tmp_path / "token" / "fleet.json").exists() and "PASS" in r.stdout
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
