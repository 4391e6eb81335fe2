"""The shards of a lean fleet run as Ray actors (ground/fleetrun.py's
backend for --workers N > 1 and --ray-address).

`--workers N` starts a local Ray for this run only (N CPUs, no dashboard,
no usage report, its logs kept out of the terminal) and shuts it down when
the run ends, so nothing of it is left running or spinning; `--ray-address
ADDR` joins an existing cluster and leaves it as it was. One actor per
shard, each holding a ground/shard.py Shard; a window is one `advance` call
on every actor at once. An actor whose worker died (RayActorError) ends the
run: ShardDied names the shard; the others still give their counters.
"""

import os
import sys

from ground.fleetrun import ShardDied, _span

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINISH_TIMEOUT_S = 300  # a live shard's counters at the end, at the latest


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ValueError("--workers > 1 and --ray-address need Ray (pip install ray==2.60.0; `make run` installs"
                         " it): %s; --workers 1 runs the shards in this process" % e) from None
    return ray


class _ShardActor:
    """A Shard in a Ray worker process."""

    def __init__(self, kw):
        from ground.shard import Shard

        self.shard = Shard(hard_death=True, **kw)

    def advance(self, until_ns, inbox, last):
        out = self.shard.advance(until_ns, inbox, last)
        return out, self.shard.last_cpu_s

    def finish(self, inbox, status, reason):
        return self.shard.finish(inbox, status, reason)

    def where(self):
        return self.shard.now

    def peak_rss_kb(self):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class RayShards:
    name = "ray"

    def __init__(self, specs, workers, address=None):
        ray = self.ray = _import_ray()
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
                ray.init(address=address, **kw)
            self.started = True
        cls = ray.remote(num_cpus=1, max_restarts=0)(_ShardActor)
        self.clusters = [kw["clusters"] for kw in specs]
        self.actors = []
        try:
            self.actors = [cls.remote(kw) for kw in specs]
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
            raise ShardDied("shard %d (clusters %s) died while %s: %s" % (k, _span(self.clusters[k]), doing, first)) from None

    def advance(self, until_ns, inboxes, last):
        refs = [a.advance.remote(until_ns, inboxes[k], last) for k, a in enumerate(self.actors)]
        got = self._get(refs, "running the window to mission %.3f s" % (until_ns / 1e9))
        self.last_cpu_s = [cpu for _, cpu in got]
        return [out for out, _ in got]

    def finish(self, inboxes, status, reason):
        """Each live shard's counters (None for a dead one)."""
        ray = self.ray
        out = []
        for k, a in enumerate(self.actors):
            if getattr(self, "dead", None) == k:
                out.append(None)
                continue
            try:
                out.append(ray.get(a.finish.remote(inboxes[k], status, reason), timeout=FINISH_TIMEOUT_S))
            except Exception as e:  # another one went down too: its counters are lost, said in fleet.json
                sys.stderr.write("ground run: shard %d (clusters %s): counters lost: %s\n"
                                 % (k, _span(self.clusters[k]), type(e).__name__))
                out.append(None)
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
