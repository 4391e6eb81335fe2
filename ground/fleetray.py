"""The shards of a lean fleet run as Ray actors (ground/fleetrun.py's
backend for --workers N > 1 and --ray-address).

`--workers N` starts a local Ray for this run only (N CPUs, no dashboard,
no usage report, its logs kept out of the terminal) and shuts it down when
the run ends, so nothing of it is left running or spinning; `--ray-address
ADDR` joins an existing cluster and leaves it as it was. One actor per
worker, each holding its ground/shard.py Shards (fleetrun.plan_workers) and
running them one after the other each window; a window is one `advance`
call on every actor at once. An actor whose worker died (a RayError) ends
the run: ShardDied names its shards; the others still give their counters.
"""

import os
import re
import sys

from ground.fleetrun import ShardDied, _span

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its task errors' first line
FINISH_TIMEOUT_S = 300  # a live shard's counters at the end, at the latest
REACH_TIMEOUT_S = 5.0  # --ray-address: how long to try its TCP port before saying nothing is there


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS
_H2_SETTINGS = 4  # the frame type a gRPC (HTTP/2) server opens with


def check_reachable(address, timeout_s=REACH_TIMEOUT_S):
    """ValueError unless a gRPC server answers at a host:port (or
    ray://host:port) address within timeout_s: Ray's GCS (the head's port,
    6379 by default) and its client server (ray://, 10001) both speak gRPC,
    that is HTTP/2. ray.init keeps retrying for minutes an address where
    nothing listens, or where something else does (the dashboard's HTTP on
    8265, say), so this asks first: the HTTP/2 preface, and a SETTINGS frame
    back. "auto", "local" and other forms go to Ray unchecked."""
    import socket

    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
    except OSError as e:
        raise ValueError("--ray-address %s: nothing answers at %s:%s (%s); start a Ray head there (ray start --head)"
                         " or use --workers N for a local Ray" % (address, host, port, e.strerror or e)) from None
    head = b""
    try:
        conn.settimeout(timeout_s)
        conn.sendall(_H2_PREFACE)
        while len(head) < 9:
            got = conn.recv(9 - len(head))
            if not got:
                break
            head += got
    except OSError:
        pass  # a timeout, or the peer hung up: judged by what came
    finally:
        conn.close()
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        said = "it answered %r, not gRPC" % head[:16] if head else "no answer within %g s" % timeout_s
        raise ValueError("--ray-address %s: something listens at %s:%s but it is not a Ray head (%s); give the"
                         " head's GCS port (ray start --head prints it, 6379 by default) or ray://host:10001"
                         % (address, host, port, said)) from None


def join_error(address, e):
    """What to tell a user whose --ray-address ray.init could not join (e:
    its exception; Ray gives up after about 20 s, or 30 s on ray://)."""
    texts, seen = [], e
    while seen is not None and len(texts) < 4:  # the exception and its causes
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    lines = [x.strip() for t in texts for x in t.splitlines() if x.strip()]
    errors = [x for x in lines if "Error: " in x and not x.startswith("File ")]  # Ray's reasons, a traceback's last lines
    why = (errors[-1] if errors else lines[0] if lines else e.__class__.__name__)[:300]
    text = "--ray-address %s: Ray could not join the cluster there (%s)" % (address, why)
    token = "RAY_AUTH_MODE=token, the token in ~/.ray/auth_token or RAY_AUTH_TOKEN (ray get-auth-token)"
    if "auth" in " ".join(texts).lower():
        text += ("; the cluster wants its token (`ray start` turns token authentication on since Ray 2.59): run"
                 " with " + token)
    elif address.startswith("ray://"):  # a client server refusing a missing token only times out (Ray 2.60)
        text += ("; if the head uses token authentication (`ray start` does since Ray 2.59), run with " + token)
    return text


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ValueError("--workers > 1 and --ray-address need Ray (pip install ray==2.60.0; `make run` installs"
                         " it): %s; --workers 1 runs the shards in this process" % e) from None
    return ray


class _ShardActor:
    """A worker's Shards in a Ray worker process, or, with python, in a
    child process of that interpreter (ground/shard_host.py), the actor
    passing each call on."""

    def __init__(self, kws, python=None):
        self.host = None
        if python is not None:
            from ground.shard_host import ShardHost

            self.host = ShardHost(python, [dict(kw, hard_death=True) for kw in kws])
            return
        from ground.shard import Shard

        self.shards = [Shard(hard_death=True, **kw) for kw in kws]

    def advance(self, until_ns, inboxes, last):
        """Each shard's frames for other shards, and their CPU in all."""
        if self.host is not None:
            return self.host.call("advance", until_ns, inboxes, last)
        from ground.shard import advance_all

        return advance_all(self.shards, until_ns, inboxes, last)

    def finish(self, inboxes, status, reason):
        if self.host is not None:
            return self.host.call("finish", inboxes, status, reason)
        from ground.shard import finish_all

        return finish_all(self.shards, inboxes, status, reason)

    def where(self):
        if self.host is not None:
            return self.host.call("where")
        return self.shards[0].now

    def peak_rss_kb(self):
        """This worker's peak RSS: the actor's, and its shard process's."""
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return own + (self.host.call("peak_rss_kb") if self.host is not None else 0)


class RayShards:
    name = "ray"

    def __init__(self, specs, groups, address=None, python=None):
        """specs: each shard's Shard arguments; groups: each worker's shard
        indices (fleetrun.plan_workers); python: the interpreter of each
        worker's shard process (ground/shard_host.py), or None: in the
        worker itself."""
        ray = self.ray = _import_ray()
        workers = len(groups)
        self.started = False
        # the workers import this checkout's ground/ and firmware/, whatever is installed
        path = os.pathsep.join([ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        env = {"PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["PYTHONPATH"] = path
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                      runtime_env={"env_vars": env}, configure_logging=True)
            if address is None:
                kw.update(num_cpus=workers, _system_config={"metrics_report_interval_ms": 60_000})
                ray.init(**kw)
            else:
                check_reachable(address)
                try:
                    ray.init(address=address, **kw)
                except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
                    raise ValueError(join_error(address, e)) from None
            self.started = True
        cls = ray.remote(num_cpus=1, max_restarts=0)(_ShardActor)
        self.groups = groups
        self.clusters = [kw["clusters"] for kw in specs]
        self.actors = []
        try:
            self.actors = [cls.remote([specs[k] for k in g], python) for g in groups]
            # construction errors (bad input) surface here, naming the shard
            self._get([a.where.remote() for a in self.actors], "starting")
        except BaseException:
            self.close()  # nothing of this Ray is left running
            raise

    def _get(self, refs, doing):
        ray = self.ray
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as e:  # a worker that died, crashed or was killed (OutOfMemoryError: Ray's memory monitor)
            dead = None
            for k, r in enumerate(refs):
                try:
                    ray.get(r, timeout=FINISH_TIMEOUT_S)
                except Exception:
                    dead = k
                    break
            k = 0 if dead is None else dead
            self.dead = k
            cause = getattr(e, "cause", None)  # a RayTaskError's: what the actor raised (a shard process that died)
            text = _ANSI.sub("", str(cause if isinstance(cause, Exception) else e)).strip()
            first = text.splitlines()[0] if text else type(e).__name__
            raise ShardDied("%s died while %s: %s" % (self._named(k), doing, first)) from None

    def _named(self, w):
        """Worker w's shards, as a message names them."""
        g = self.groups[w]
        cl = [c for k in g for c in self.clusters[k]]
        if len(g) == 1:
            return "shard %d (clusters %s)" % (g[0], _span(cl))
        return "shards %d..%d (clusters %s)" % (g[0], g[-1], _span(cl))

    def advance(self, until_ns, inboxes, last):
        refs = [a.advance.remote(until_ns, [inboxes[k] for k in g], last) for g, a in zip(self.groups, self.actors)]
        got = self._get(refs, "running the window to mission %.3f s" % (until_ns / 1e9))
        self.last_cpu_s = [cpu for _, cpu in got]  # per worker
        return [out for outs, _ in got for out in outs]  # the groups are runs of consecutive shards

    def finish(self, inboxes, status, reason):
        """Each shard's counters (None for a dead worker's)."""
        ray = self.ray
        out = []
        for w, (g, a) in enumerate(zip(self.groups, self.actors)):
            if getattr(self, "dead", None) == w:
                out += [None] * len(g)
                continue
            try:
                out += ray.get(a.finish.remote([inboxes[k] for k in g], status, reason), timeout=FINISH_TIMEOUT_S)
            except Exception as e:  # another one went down too: its counters are lost, said in fleet.json
                sys.stderr.write("ground run: %s: counters lost: %s\n" % (self._named(w), type(e).__name__))
                out += [None] * len(g)
        return out

    def peak_rss_kb(self):
        """Each live worker's peak RSS (kB; None for a dead one)."""
        out = []
        for k, a in enumerate(self.actors):
            try:
                out.append(None if getattr(self, "dead", None) == k else
                           self.ray.get(a.peak_rss_kb.remote(), timeout=FINISH_TIMEOUT_S))
            except Exception:
                out.append(None)
        return out

    def close(self):
        ray = self.ray
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        if self.started:
            ray.shutdown()
