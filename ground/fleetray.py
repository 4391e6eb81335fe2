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
import sys

from ground.fleetrun import ShardDied, _span

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINISH_TIMEOUT_S = 300  # a live shard's counters at the end, at the latest
REACH_TIMEOUT_S = 5.0  # --ray-address: how long to try its TCP port before saying nothing is there


def check_reachable(address, timeout_s=REACH_TIMEOUT_S):
    """ValueError unless something accepts a TCP connection at a host:port
    (or ray://host:port) address within timeout_s. ray.init keeps retrying
    an address where nothing listens for minutes, so this asks first;
    "auto", "local" and other forms go to Ray unchecked."""
    import socket

    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError("--ray-address %s: nothing answers at %s:%s (%s); start a Ray head there (ray start --head)"
                         " or use --workers N for a local Ray" % (address, host, port, e.strerror or e)) from None


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ValueError("--workers > 1 and --ray-address need Ray (pip install ray==2.60.0; `make run` installs"
                         " it): %s; --workers 1 runs the shards in this process" % e) from None
    return ray


class _ShardActor:
    """A worker's Shards in a Ray worker process."""

    def __init__(self, kws):
        from ground.shard import Shard

        self.shards = [Shard(hard_death=True, **kw) for kw in kws]

    def advance(self, until_ns, inboxes, last):
        """Each shard's frames for other shards, and their CPU in all."""
        outs = [sh.advance(until_ns, box, last) for sh, box in zip(self.shards, inboxes)]
        return outs, sum(sh.last_cpu_s for sh in self.shards)

    def finish(self, inboxes, status, reason):
        return [sh.finish(box, status, reason) for sh, box in zip(self.shards, inboxes)]

    def where(self):
        return self.shards[0].now

    def peak_rss_kb(self):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class RayShards:
    name = "ray"

    def __init__(self, specs, groups, address=None):
        """specs: each shard's Shard arguments; groups: each worker's shard
        indices (fleetrun.plan_workers)."""
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
                ray.init(address=address, **kw)
            self.started = True
        cls = ray.remote(num_cpus=1, max_restarts=0)(_ShardActor)
        self.groups = groups
        self.clusters = [kw["clusters"] for kw in specs]
        self.actors = []
        try:
            self.actors = [cls.remote([specs[k] for k in g]) for g in groups]
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
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
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
