"""Scaling benchmarks: how validate, plan, apply and drift grow with the number of layers.

    python -m benchmarks.run [--sizes 100,1000,10000] [--runs 3] [--out benchmarks/out]
                             [--report benchmarks/report] [--apply-timeout 300]

For each size N it writes a synthetic config repository (:mod:`benchmarks.generate`),
creates and fills the N tables in a throwaway PostGIS (an ``EmbeddedCluster`` started
here and destroyed at the end), then runs the real CLI (``python -m honua_plan``) in a
fresh process per run and measures wall time (process start and imports included) and
peak RSS (``wait4``). Each operation runs ``--runs`` times; the median is reported. One
more run per operation goes through :mod:`benchmarks.probe`, which counts the SQL
statements sent to PostgreSQL.

Operations, in order: ``validate`` (cold parse cache, then warm), first ``plan``
(everything to create), ``apply`` of a saved plan, no-op ``plan`` (warm and cold parse
cache), ``drift`` with nothing drifted, ``drift`` after 1% of the tables were altered out
of band (a column added; dropped again afterwards), and one changed layer (``plan --out``
then ``apply``, the two times added).

Each size is measured twice over the same tables: with a server of ``type: none`` (the
engine alone, the floor) and with ``type: pygeoapi`` (the default users run: the apply
publishes, starts or reloads gunicorn and checks health; plan and drift run with the
server up). For the pygeoapi rows the probe run also counts HTTP requests and records
the server's own times (publish, start-up, reload, health), reported apart from the
engine's.

Writes ``report.json``, ``report.md`` and (with matplotlib) ``scaling.png`` to ``--out``;
``--report STEM`` also writes ``STEM.json`` / ``STEM.md`` / ``STEM.png`` (the committed
report is ``--report benchmarks/report``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import generate

ENV = generate.ENVIRONMENT
DEFAULT_SIZES = (100, 1000, 10000)

SERVERS = ("none", "pygeoapi")
# Budgets (README "Performance"): wall seconds, end to end, by (operation, N).
TIME_BUDGETS: dict[tuple[str, int], float] = {
    ("plan_noop", 1000): 1.0, ("drift_clean", 1000): 1.0,
    ("plan_noop", 10000): 6.0, ("drift_clean", 10000): 6.0,
    ("apply", 1000): 5.0,
}
# with the pygeoapi server (issue 17)
PUBLISHED_TIME_BUDGETS: dict[tuple[str, int], float] = {
    ("apply", 1000): 8.0, ("change_one", 1000): 3.0,
    ("apply", 10000): 60.0, ("plan_noop", 10000): 6.0,
}
PUBLISHED_OVER_FLOOR = 0.2  # no-op plan and clean drift: at most this much over type none, at N = 1,000
RSS_BUDGET_MB = 400.0  # at N = 10,000, for the no-op plan and the clean drift (as the issue states it)
RSS_BUDGETED = ("plan_noop", "drift_clean")
GROWTH_BUDGET = 12.0  # time(10,000) / time(1,000)

OPERATIONS = (
    ("validate_cold", "validate (cold parse cache)"),
    ("validate", "validate"),
    ("plan_first", "first plan (all creates)"),
    ("apply", "apply of that plan"),
    ("plan_noop", "no-op plan after apply"),
    ("plan_noop_cold", "no-op plan, cold parse cache"),
    ("drift_clean", "drift, nothing drifted"),
    ("drift_1pct", "drift, 1% of tables altered"),
    ("change_one", "one changed layer: plan + apply"),
)
PUBLISHED_OPERATIONS = (
    ("plan_first", "first plan (all creates)"),
    ("apply", "apply of N new layers (publish, start, health)"),
    ("plan_noop", "no-op plan, server running"),
    ("drift_clean", "drift, nothing drifted, server running"),
    ("change_one", "one changed layer: plan + apply + reload"),
)
LABELS = dict(OPERATIONS)
PUBLISHED_LABELS = dict(PUBLISHED_OPERATIONS)


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    exit_code: int | None
    timed_out: bool = False


@dataclass
class Measurement:
    runs: list[Run] = field(default_factory=list)
    statements: int | None = None
    requests: int | None = None  # HTTP requests (probe run)
    server: dict[str, float] = field(default_factory=dict)  # the server's own times (probe run)
    status: str = "ok"  # ok | failed | timeout | skipped
    note: str = ""
    probe: Run | None = None  # the extra run that counted statements

    @property
    def median_s(self) -> float | None:
        ok = [r.seconds for r in self.runs if not r.timed_out]
        return round(statistics.median(ok), 3) if ok else None

    @property
    def max_rss_mb(self) -> float | None:
        return round(max(r.max_rss_mb for r in self.runs), 1) if self.runs else None

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "max_rss_mb": self.max_rss_mb, "statements": self.statements,
                "requests": self.requests, "server": self.server, "status": self.status, "note": self.note, "runs": [asdict(r) for r in self.runs]}


# --------------------------------------------------------------------------- processes


# The measured command runs under a small wrapper that forks it: the child's ru_maxrss
# then starts from the wrapper's size, not from this (much larger) process's, which
# Linux would otherwise carry over into the child at exec.
_WRAPPER = r"""
import json, os, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss,
               "exit_code": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_measured(argv: Sequence[str], env: dict[str, str], cwd: Path, *, timeout: float,
                 log: Path | None = None) -> Run:
    """Run ``argv``; wall time, peak RSS (ru_maxrss of the child) and exit code."""
    fd, result = tempfile.mkstemp(prefix="honua-bench-", suffix=".json")
    os.close(fd)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, result, *argv], env=env, cwd=cwd,
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Run(round(timeout, 3), 0.0, None, True)
        except BaseException:  # interrupted: do not leave the command running
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        try:
            data = json.loads(Path(result).read_text())
        except ValueError:
            return Run(0.0, 0.0, proc.returncode, False)
        return Run(round(data["seconds"], 3), round(data["maxrss_kb"] / 1024, 1), data["exit_code"], False)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
        with contextlib.suppress(OSError):
            os.unlink(result)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, dsn: str, n: int, server: str = "none") -> None:
        self.args = args
        self.n = n
        self.dsn = dsn
        self.server = server
        self.tag = f"{n}" if server == "none" else f"{n}-{server}"
        self.repo = workdir / f"repo-{self.tag}"
        self.cache = workdir / "cache"
        self.logs = Path(args.out).resolve() / "logs"  # the commands run in the repository
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({"HONUA_PG_DSN": dsn, "NO_COLOR": "1", "HONUA_ACTOR": "benchmarks",
                         "HONUA_CACHE_DIR": str(self.cache), generate.PORT_ENV: str(free_port())})
        for var in ("HONUA_CACHE", "PYTHONDONTWRITEBYTECODE", "HONUA_PG_DSN_DEV"):
            self.env.pop(var, None)  # a user's machine keeps .pyc files
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), *filter(None, [os.environ.get("PYTHONPATH")])])

    def honua(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "honua_plan", "-C", str(self.repo), *args]

    def probe(self, count_file: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.probe", str(count_file), "--", "-C", str(self.repo), *args]

    def run(self, argv: Sequence[str], name: str, timeout: float | None = None) -> Run:
        return run_measured(argv, self.env, self.repo, timeout=timeout or self.args.timeout,
                            log=self.logs / f"{self.tag}-{name}.log")

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def stop_server(self) -> None:
        if self.server == "pygeoapi" and (self.repo / "state").is_dir():
            self.run(self.honua("serve", "--env", ENV, "--stop"), "serve-stop")

    def reset_state(self) -> None:
        """A fresh state: the files, and the serial the database remembers (or plan refuses
        a missing state while the database records one)."""
        import psycopg

        self.stop_server()  # its pid file is under state/
        state = self.repo / "state"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('honua_plan.state_serial')").fetchone()[0] is not None:  # type: ignore[index]
                conn.execute("DELETE FROM honua_plan.state_serial")

    def measure(self, name: str, args: Sequence[str], expect: tuple[int, ...], *,
                before: Callable[[], None] | None = None, runs: int | None = None,
                timeout: float | None = None) -> Measurement:
        m = Measurement()
        for _ in range(runs or self.args.runs):
            if before:
                before()
            r = self.run(self.honua(*args), name, timeout)
            m.runs.append(r)
            if r.timed_out:
                m.status, m.note = "timeout", f"did not finish within {timeout or self.args.timeout:.0f} s"
                return m
            if r.exit_code not in expect:
                m.status, m.note = "failed", f"exit code {r.exit_code} (expected {expect}); see logs/{self.tag}-{name}.log"
                return m
        if before:
            before()
        count_file = self.logs / f"{self.tag}-{name}.count.json"
        m.probe = self.run(self.probe(count_file, *args), f"{name}-probe", timeout)
        self.read_counts(m, count_file)
        return m

    @staticmethod
    def read_counts(m: Measurement, count_file: Path) -> None:
        try:
            data = json.loads(count_file.read_text())
            m.statements = int(data["statements"])
            m.requests = int(data.get("requests", 0))
            m.server = {k: float(v) for k, v in (data.get("server") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError):
            m.note = "statement count unavailable"

    def change_one(self, runs: int, timeout: float) -> Measurement:
        """One layer's title changed, then ``plan --out`` and ``apply`` (times added); the
        probe run counts the apply's statements and requests."""
        m = Measurement()
        layer = self.repo / "environments" / ENV / "layers" / "layer-00000.yaml"
        original = layer.read_text()
        plan_file = self.repo / "state-change.json"
        try:
            for k in range(runs + 1):
                layer.write_text(original.replace('title: "Layer 0"', f'title: "Layer 0 (edit {k})"'))
                p = self.run(self.honua("plan", "--env", ENV, "--out", str(plan_file)), "change-plan", timeout)
                if p.exit_code != 0 or p.timed_out:
                    m.status, m.note = "failed", f"plan exit {p.exit_code}; see logs/{self.tag}-change-plan.log"
                    return m
                apply = ["apply", "--env", ENV, str(plan_file), "--auto-approve"]
                if k < runs:
                    a = self.run(self.honua(*apply), "change-apply", timeout)
                    if a.exit_code != 0 or a.timed_out:
                        m.status, m.note = "failed", f"apply exit {a.exit_code}; see logs/{self.tag}-change-apply.log"
                        return m
                    m.runs.append(Run(round(p.seconds + a.seconds, 3), max(p.max_rss_mb, a.max_rss_mb), 0))
                else:
                    count_file = self.logs / f"{self.tag}-change_one.count.json"
                    m.probe = self.run(self.probe(count_file, *apply), "change-apply-probe", timeout)
                    self.read_counts(m, count_file)
        finally:
            layer.write_text(original)
        return m


# --------------------------------------------------------------------------- one size


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_size(args: argparse.Namespace, workdir: Path, cluster: Any, n: int,
               skip_apply: str | None) -> dict[str, Any]:
    log = print
    log(f"\n== N = {n:,} layers")
    result: dict[str, Any] = {"n": n, "operations": {}}
    dbname = f"bench_{n}"
    cluster.drop_database(dbname)
    dsn = cluster.create_database(dbname, template=cluster.dbname)
    specs = generate.layers(n)
    t0 = time.perf_counter()
    b = Bench(args, workdir, dsn, n)
    shutil.rmtree(b.repo, ignore_errors=True)
    generate.write_repo(b.repo, specs)
    t1 = time.perf_counter()
    generate.create_tables(dsn, specs)
    t2 = time.perf_counter()
    result["setup"] = {"repository_s": round(t1 - t0, 2), "tables_s": round(t2 - t1, 2),
                       "services": len({s.service for s in specs}), "rows": sum(s.rows for s in specs),
                       "geometry_mix": {g: sum(1 for s in specs if s.geometry == g) for g in generate.GEOMETRIES}}
    log(f"   setup: repository {t1 - t0:.1f} s, tables {t2 - t1:.1f} s ({result['setup']['rows']:,} rows)")
    ops: dict[str, Measurement] = {}

    def done(name: str, m: Measurement) -> None:
        ops[name] = m
        med = f"{m.median_s:.2f} s" if m.median_s is not None else "-"
        log(f"   {LABELS[name]:32s} {med:>9s}  {m.max_rss_mb or 0:7.1f} MB  "
            f"{m.statements if m.statements is not None else '-':>6} stmts  {m.status} {m.note}")

    b.clear_cache()
    b.run([sys.executable, "-m", "honua_plan", "--help"], "warmup")  # compile .pyc once
    result["terraform"] = bench_terraform(args, workdir, n)
    if "none" not in args.servers:
        result["operations"] = {}
        result["published"] = bench_published(args, workdir, dsn, n, specs, skip_apply)
        if not args.keep:
            cluster.drop_database(dbname)
        return result
    done("validate_cold", b.measure("validate_cold", ["validate"], (0,), before=b.clear_cache))
    done("validate", b.measure("validate", ["validate"], (0,)))
    done("plan_first", b.measure("plan_first", ["plan", "--env", ENV, "--detailed-exitcode"], (2,)))

    plan_file = b.repo / "state-plan.json"

    def fresh_plan() -> None:
        b.reset_state()
        r = b.run(b.honua("plan", "--env", ENV, "--out", str(plan_file)), "apply-plan")
        if r.exit_code != 0:  # the apply run that follows then fails and says so
            log(f"   (plan --out before apply: exit {r.exit_code}{', timed out' if r.timed_out else ''})")

    if skip_apply:
        m = Measurement(status="skipped", note=skip_apply)
        done("apply", m)
    else:
        m = b.measure("apply", ["apply", "--env", ENV, str(plan_file), "--auto-approve"], (0,),
                      before=fresh_plan, timeout=args.apply_timeout)
        done("apply", m)
    result["state_recorded_by"] = "apply"
    probe = ops["apply"].probe
    if ops["apply"].status != "ok" or probe is None or probe.exit_code != 0:
        b.reset_state()
        code = ("import sys; from benchmarks.state import record_applied_state; "
                "record_applied_state(sys.argv[1], sys.argv[2])")
        subprocess.run([sys.executable, "-c", code, str(b.repo), ENV], env=b.env, cwd=b.repo, check=True,
                       stdout=subprocess.DEVNULL)
        result["state_recorded_by"] = "benchmarks.state.record_applied_state (apply did not finish)"

    done("plan_noop", b.measure("plan_noop", ["plan", "--env", ENV, "--detailed-exitcode"], (0,)))
    done("plan_noop_cold", b.measure("plan_noop_cold", ["plan", "--env", ENV, "--detailed-exitcode"], (0,),
                                     before=b.clear_cache))
    done("drift_clean", b.measure("drift_clean", ["drift", "--env", ENV], (0,)))
    targets = generate.drift_targets(specs)
    generate.alter_tables(dsn, targets)
    try:
        m = b.measure("drift_1pct", ["drift", "--env", ENV], (2,))
        m.note = (m.note + " " if m.note else "") + f"{len(targets)} table(s) altered"
        done("drift_1pct", m)
    finally:
        generate.alter_tables(dsn, targets, revert=True)
    done("change_one", b.change_one(args.runs, args.apply_timeout))
    result["operations"] = {k: v.to_json() for k, v in ops.items()}
    if not args.keep:
        shutil.rmtree(b.repo, ignore_errors=True)
    if "pygeoapi" in args.servers:
        result["published"] = bench_published(args, workdir, dsn, n, specs, skip_apply)
    if not args.keep:
        cluster.drop_database(dbname)
    return result


TERRAFORM_RATIOS = {"apply": 0.3, "plan_noop": 0.5}  # pygeoapi rows / Terraform's, at N = 1,000
TERRAFORM_MAX_N = 1000  # the budgets compare at 1,000; Terraform's apply of 10,000 takes minutes per run


def bench_terraform(args: argparse.Namespace, workdir: Path, n: int) -> dict[str, Any] | None:
    """Terraform on N ``terraform_data`` resources (its built-in provider: no download),
    measured like the engine: apply of N new resources (fresh state each run), then a
    no-op ``plan -detailed-exitcode``. None when no ``terraform`` is on PATH."""
    tf = shutil.which("terraform")
    if tf is None or n > TERRAFORM_MAX_N:
        return None
    log = print
    folder = workdir / f"terraform-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "main.tf").write_text("".join(
        f'resource "terraform_data" "layer_{i:05d}" {{\n  input = {{ title = "Layer {i}", service = "svc-{i // 50:03d}" }}\n}}\n'
        for i in range(n)))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(folder), "TF_IN_AUTOMATION": "1",
           "CHECKPOINT_DISABLE": "1"}
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def run(name: str, *argv: str) -> Run:
        return run_measured([tf, *argv, "-input=false", "-no-color"], env, folder, timeout=args.apply_timeout,
                            log=logs / f"terraform-{n}-{name}.log")

    init = run("init", "init")
    if init.exit_code != 0:
        log(f"   terraform init failed (exit {init.exit_code}); see logs/terraform-{n}-init.log")
        return None
    out: dict[str, Measurement] = {"apply": Measurement(), "plan_noop": Measurement()}
    for _ in range(args.runs):
        (folder / "terraform.tfstate").unlink(missing_ok=True)
        (folder / "terraform.tfstate.backup").unlink(missing_ok=True)
        r = run("apply", "apply", "-auto-approve")
        out["apply"].runs.append(r)
        if r.exit_code != 0:
            out["apply"].status = "failed"
    for _ in range(args.runs):
        r = run("plan", "plan", "-detailed-exitcode")
        out["plan_noop"].runs.append(r)
        if r.exit_code != 0:
            out["plan_noop"].status = "failed"
    for name, m in out.items():
        med = f"{m.median_s:.2f} s" if m.median_s is not None else "-"
        log(f"   terraform {name:38s} {med:>9s}  {m.max_rss_mb or 0:7.1f} MB  {m.status}")
    shutil.rmtree(folder, ignore_errors=True)
    return {k: v.to_json() for k, v in out.items()}


def bench_published(args: argparse.Namespace, workdir: Path, dsn: str, n: int,
                    specs: Sequence[generate.SyntheticLayer], skip_apply: str | None) -> dict[str, Any]:
    """The same tables, published to pygeoapi: apply (publish, start, health), no-op plan
    and clean drift with the server up, one changed layer (plan + apply + reload)."""
    log = print
    log(f"   -- with the pygeoapi server (N = {n:,})")
    b = Bench(args, workdir, dsn, n, server="pygeoapi")
    shutil.rmtree(b.repo, ignore_errors=True)
    generate.write_repo(b.repo, specs, server="pygeoapi")
    ops: dict[str, Measurement] = {}

    def done(name: str, m: Measurement) -> None:
        ops[name] = m
        med = f"{m.median_s:.2f} s" if m.median_s is not None else "-"
        srv = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(m.server.items()))
        log(f"   {PUBLISHED_LABELS[name]:44s} {med:>9s}  {m.max_rss_mb or 0:7.1f} MB  "
            f"{m.statements if m.statements is not None else '-':>6} stmts  "
            f"{m.requests if m.requests is not None else '-':>5} reqs  {m.status} {m.note} {srv}")

    plan_file = b.repo / "state-plan.json"

    def fresh_plan() -> None:
        b.reset_state()  # stops the server first
        r = b.run(b.honua("plan", "--env", ENV, "--out", str(plan_file)), "apply-plan")
        if r.exit_code != 0:
            log(f"   (plan --out before apply: exit {r.exit_code}{', timed out' if r.timed_out else ''})")

    try:
        b.reset_state()  # the database may remember the serial of the `none` pass's state
        b.run([sys.executable, "-m", "honua_plan", "--help"], "warmup")
        done("plan_first", b.measure("plan_first", ["plan", "--env", ENV, "--detailed-exitcode"], (2,)))
        if skip_apply:
            done("apply", Measurement(status="skipped", note=skip_apply))
        else:
            done("apply", b.measure("apply", ["apply", "--env", ENV, str(plan_file), "--auto-approve"], (0,),
                                    before=fresh_plan, timeout=args.apply_timeout))
        probe = ops["apply"].probe
        if ops["apply"].status == "ok" and probe is not None and probe.exit_code == 0:
            done("plan_noop", b.measure("plan_noop", ["plan", "--env", ENV, "--detailed-exitcode"], (0,)))
            done("drift_clean", b.measure("drift_clean", ["drift", "--env", ENV], (0,)))
            done("change_one", b.change_one(args.runs, args.apply_timeout))
            server_rss = _server_rss_mb(b)
        else:
            server_rss = None
    finally:
        b.stop_server()
        if not args.keep:
            shutil.rmtree(b.repo, ignore_errors=True)
    return {"operations": {k: v.to_json() for k, v in ops.items()}, "server_rss_mb": server_rss}


def _server_rss_mb(b: Bench) -> dict[str, float] | None:
    """Resident memory of the gunicorn master and its workers now (VmRSS, MB)."""
    pid_file = b.repo / "state" / ENV / "server" / "gunicorn.pid"
    try:
        master = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None

    def rss(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    try:
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                   and (p / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(master)]
    except OSError:
        workers = []
    out = {"master": rss(master)}
    for i, w in enumerate(sorted(workers)):
        with contextlib.suppress(OSError):
            out[f"worker {i + 1}"] = rss(w)
    return out


# --------------------------------------------------------------------------- machine, budgets


def machine_info(cluster: Any) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    pg = postgis = None
    try:
        with cluster.connect() as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
            postgis = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()[0]
    except Exception:  # pragma: no cover - informational only
        pass
    import importlib.metadata as md

    libs: dict[str, str | None] = {}
    for dist in ("pydantic", "PyYAML", "psycopg", "sqlglot", "networkx", "pygeoapi"):
        try:
            libs[dist] = md.version(dist)
        except md.PackageNotFoundError:
            libs[dist] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip() or None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "os": platform.platform(),
            "python": platform.python_version(), "postgresql": pg, "postgis": postgis,
            "libraries": libs, "git_commit": commit}


def import_time() -> dict[str, Any]:
    """``python -X importtime -m honua_plan --help``: total and the heaviest top-level imports."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "honua_plan", "--help"], env=env, capture_output=True, check=False)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "honua_plan", "--help"], env=env,
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    top: list[tuple[str, int]] = []
    for line in p.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            if not name.startswith("  "):  # direct imports of __main__
                top.append((name.strip(), int(parts[1])))
    top.sort(key=lambda x: -x[1])
    return {"help_wall_s": round(wall, 3), "top_imports_ms": {k: round(v / 1000, 1) for k, v in top[:6]}}


def evaluate_budgets(sizes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def op(n: int, name: str) -> dict[str, Any] | None:
        return sizes.get(n, {}).get("operations", {}).get(name)

    for (name, n), limit in TIME_BUDGETS.items():
        m = op(n, name)
        if m is None:
            continue
        got = m["median_s"]
        out.append({"budget": f"{LABELS[name]} at N={n:,} < {limit:g} s", "value": got,
                    "met": got is not None and m["status"] == "ok" and got < limit})
    for name in RSS_BUDGETED:
        m = op(10000, name)
        if m is not None:
            rss = m["max_rss_mb"]
            out.append({"budget": f"{LABELS[name]}: peak RSS at N=10,000 < {RSS_BUDGET_MB:g} MB",
                        "value": rss, "met": rss is not None and m["status"] == "ok" and rss < RSS_BUDGET_MB})
    for name in ("plan_noop", "drift_clean"):
        counts = {n: (op(n, name) or {}).get("statements") for n in sorted(sizes)}
        vals = [c for c in counts.values() if c is not None]
        if len(vals) >= 2:
            out.append({"budget": f"SQL statements of {LABELS[name]} constant in N", "value": counts,
                        "met": len(set(vals)) == 1})
    out += evaluate_published_budgets(sizes)
    if 1000 in sizes and 10000 in sizes:
        for name in ("plan_noop", "drift_clean", "validate", "plan_first", "apply"):
            a, b = op(1000, name), op(10000, name)
            if a and b and a["median_s"] and b["median_s"]:
                ratio = round(b["median_s"] / a["median_s"], 1)
                out.append({"budget": f"{LABELS[name]}: time(10,000) / time(1,000) <= {GROWTH_BUDGET:g}",
                            "value": ratio, "met": ratio <= GROWTH_BUDGET})
    return out


def evaluate_published_budgets(sizes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 17's budgets: the pygeoapi rows, and their distance from the ``none`` floor."""
    out: list[dict[str, Any]] = []

    def pub(n: int, name: str) -> dict[str, Any] | None:
        return ((sizes.get(n, {}).get("published") or {}).get("operations") or {}).get(name)

    for (name, n), limit in PUBLISHED_TIME_BUDGETS.items():
        m = pub(n, name)
        if m is None:
            continue
        got = m["median_s"]
        out.append({"budget": f"pygeoapi: {PUBLISHED_LABELS[name]} at N={n:,} <= {limit:g} s", "value": got,
                    "met": got is not None and m["status"] == "ok" and got <= limit})
    for name in ("plan_noop", "drift_clean"):
        m, floor = pub(1000, name), sizes.get(1000, {}).get("operations", {}).get(name)
        if m and floor and m["median_s"] is not None and floor["median_s"] is not None:
            extra = round(m["median_s"] - floor["median_s"], 3)
            out.append({"budget": f"pygeoapi: {PUBLISHED_LABELS[name]} at N=1,000 <= type none + "
                                  f"{PUBLISHED_OVER_FLOOR:g} s", "value": extra,
                        "met": extra <= PUBLISHED_OVER_FLOOR})
    for name in ("plan_noop", "drift_clean"):
        for what in ("statements", "requests"):
            counts = {n: (pub(n, name) or {}).get(what) for n in sorted(sizes) if sizes[n].get("published")}
            vals = [c for c in counts.values() if c is not None]
            if len(vals) >= 2:
                out.append({"budget": f"pygeoapi: {what} of {PUBLISHED_LABELS[name]} constant in N",
                            "value": counts, "met": len(set(vals)) == 1})
    for name, ratio in TERRAFORM_RATIOS.items():
        m, tf = pub(1000, name), ((sizes.get(1000, {}).get("terraform") or {}).get(name))
        if m and tf and m["median_s"] is not None and tf["median_s"]:
            value = round(m["median_s"] / tf["median_s"], 3)
            out.append({"budget": f"pygeoapi: {PUBLISHED_LABELS[name]} at N=1,000 <= {ratio:g} x Terraform's "
                                  f"({tf['median_s']:.2f} s, same run)", "value": value, "met": value <= ratio})
    m = pub(10000, "plan_noop")
    if m is not None:
        rss = m["max_rss_mb"]
        out.append({"budget": f"pygeoapi: {PUBLISHED_LABELS['plan_noop']}: peak RSS at N=10,000 < {RSS_BUDGET_MB:g} MB",
                    "value": rss, "met": rss is not None and m["status"] == "ok" and rss < RSS_BUDGET_MB})
    a = pub(10000, "apply")
    if a is not None:
        rss = a["max_rss_mb"]
        out.append({"budget": f"pygeoapi: apply: engine peak RSS at N=10,000 < {RSS_BUDGET_MB:g} MB",
                    "value": rss, "met": rss is not None and a["status"] == "ok" and rss < RSS_BUDGET_MB})
    return out


# --------------------------------------------------------------------------- report


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "–"
    if m["status"] in ("skipped",):
        return "skipped"
    if m["median_s"] is None:
        return m["status"]
    s = f"{m['median_s']:.2f} s · {m['max_rss_mb']:.0f} MB · {m['statements'] if m['statements'] is not None else '?'}"
    return s + ("" if m["status"] == "ok" else f" ({m['status']})")


_CALIBRATION = "import time; t = time.perf_counter(); sum(i * i for i in range(3_000_000)); print(time.perf_counter() - t)"


def calibrate() -> float:
    """Seconds a fixed pure-Python loop takes now: on a shared VM the same code runs up to
    ~1.5x slower from one hour to the next, so a report says how fast the machine was."""
    times = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _CALIBRATION], capture_output=True, text=True, check=False)
        with contextlib.suppress(ValueError):
            times.append(float(out.stdout.strip()))
    return round(statistics.median(times), 3) if times else 0.0


def render_markdown(report: dict[str, Any]) -> str:
    sizes = {int(k): v for k, v in report["sizes"].items()}
    ns = sorted(sizes)
    mach = report["machine"]
    lines = [
        "# honua-plan scaling benchmark",
        "",
        f"Run {report['finished_at']} on {mach['cpu']} ({mach['cores']} cores, {mach['memory_gb']} GB), "
        f"Python {mach['python']}, PostgreSQL {mach['postgresql']} + PostGIS {mach['postgis']}, "
        f"commit {mach['git_commit']}. Median of {report['settings']['runs']} runs, each a fresh "
        "`python -m honua_plan` process (start-up and imports included).",
        "",
        "Each cell: median wall time · peak RSS · SQL statements sent to PostgreSQL.",
        "",
        *([f"Machine speed (a fixed pure-Python loop, median of 3): {cal.get('before_s')} s before the run, "
           f"{cal.get('after_s')} s after it; compare reports by it, the host is a shared VM.", ""]
          if (cal := report.get("calibration")) else []),
        *([f"Sizes {', '.join(f'{n:,}' for n in report['merged_from']['sizes'])} come from the run of "
           f"{report['merged_from']['started_at']} (same machine and commit), merged with `--merge`.", ""]
          if report.get("merged_from") else []),
        "| operation | " + " | ".join(f"N = {n:,}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for name, label in OPERATIONS:
        lines.append(f"| {label} | " + " | ".join(_cell(sizes[n]["operations"].get(name)) for n in ns) + " |")
    pub_ns = [n for n in ns if sizes[n].get("published")]
    if pub_ns:
        lines += ["", "### With the pygeoapi server (the default)", "",
                  "Same tables, server `type: pygeoapi` (gunicorn, 2 workers). Each cell: median wall time · "
                  "peak RSS of the engine · SQL statements · HTTP requests.", "",
                  "| operation | " + " | ".join(f"N = {n:,}" for n in pub_ns) + " |",
                  "|---|" + "---|" * len(pub_ns)]
        for name, label in PUBLISHED_OPERATIONS:
            cells = []
            for n in pub_ns:
                m = sizes[n]["published"]["operations"].get(name)
                cell = _cell(m)
                if m is not None and m.get("median_s") is not None:
                    cell += f" · {m.get('requests') if m.get('requests') is not None else '?'}"
                cells.append(cell)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    tf_ns = [n for n in ns if sizes[n].get("terraform")]
    if tf_ns:
        lines += ["", "### Terraform, same run", "",
                  "N `terraform_data` resources (built-in provider), `terraform apply -auto-approve` from an empty "
                  "state and a no-op `terraform plan -detailed-exitcode`. Each cell: median wall time · peak RSS.", "",
                  "| operation | " + " | ".join(f"N = {n:,}" for n in tf_ns) + " |", "|---|" + "---|" * len(tf_ns)]
        for name, label in (("apply", "apply of N new resources"), ("plan_noop", "no-op plan")):
            cells = []
            for n in tf_ns:
                m = sizes[n]["terraform"].get(name)
                cells.append("–" if not m or m.get("median_s") is None else
                             f"{m['median_s']:.2f} s · {m['max_rss_mb']:.0f} MB" + (
                                 "" if m["status"] == "ok" else f" ({m['status']})"))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if pub_ns:
        lines += ["", "Where the time of the pygeoapi rows goes (the probe run; seconds): the server's own work "
                  "(`publish` = config + OpenAPI + published.json, of which `openapi_generate`; `start` = gunicorn "
                  "start-up until the landing page answers; `reload` = SIGHUP until the old workers are gone; "
                  "`health` = /collections and the sample) against the whole command.", "",
                  "| operation | N | whole command | publish | openapi_generate | start | reload | health | engine "
                  "(the rest) |", "|---|---|---|---|---|---|---|---|---|"]
        for n in pub_ns:
            for name in ("apply", "change_one"):
                m = sizes[n]["published"]["operations"].get(name)
                if not m or not m.get("server") or m.get("median_s") is None:
                    continue
                srv = m["server"]
                whole = m["median_s"]
                own = sum(srv.get(k, 0.0) for k in ("publish", "start", "reload", "health"))
                lines.append(f"| {PUBLISHED_LABELS[name]} | {n:,} | {whole:.2f} | " + " | ".join(
                    f"{srv[k]:.2f}" if k in srv else "–" for k in
                    ("publish", "openapi_generate", "start", "reload", "health")) + f" | {max(whole - own, 0):.2f} |")
        rss = [(n, sizes[n]["published"].get("server_rss_mb")) for n in pub_ns]
        rss = [(n, r) for n, r in rss if r]
        if rss:
            lines += ["", "Server RSS after the runs (MB): " + "; ".join(
                f"N = {n:,}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) for n, r in rss) + "."]
    notes = [(n, name, m["note"]) for n in ns for name, m in sizes[n]["operations"].items()
             if m.get("note") and not sizes[n].get("partial")]
    recorded = [(n, sizes[n].get("state_recorded_by")) for n in ns if sizes[n].get("state_recorded_by") != "apply"]
    partial = [(n, sizes[n]["partial"]) for n in ns if sizes[n].get("partial")]
    if notes or recorded or partial:
        lines += ["", "Notes:", ""]
        lines += [f"- N = {n:,}, {LABELS[name]}: {note}" for n, name, note in notes]
        lines += [f"- N = {n:,}: the applied state for the later steps was {how}" for n, how in recorded]
        lines += [f"- N = {n:,}: {text}" for n, text in partial]
    lines += ["", "## Budgets", "", "| budget | value | met |", "|---|---|---|"]
    for b in report["budgets"]:
        value = b["value"]
        if isinstance(value, dict):
            value = ", ".join(f"{int(k):,}: {'not measured' if v is None else v}" for k, v in value.items())
        met = "yes" if b["met"] else ("not measured" if value is None else "**no**")
        lines.append(f"| {b['budget']} | {'–' if value is None else value} | {met} |")
    lines += ["", "## Setup", "", "| N | services | rows | tables created in |", "|---|---|---|---|"]
    for n in ns:
        s = sizes[n]["setup"]
        lines.append(f"| {n:,} | {s['services']} | {s['rows']:,} | {s['tables_s']} s |")
    imp = report.get("import_time")
    if imp:
        lines += ["", f"`python -m honua_plan --help`: {imp['help_wall_s']} s "
                  f"(heaviest imports, ms: {', '.join(f'{k} {v}' for k, v in imp['top_imports_ms'].items())})."]
    lines += ["", "Rerun: `python -m benchmarks.run --report benchmarks/report` (see README \"Performance\").", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = {int(k): v for k, v in report["sizes"].items()}
    ns = sorted(sizes)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, label in OPERATIONS:
        pts = [(n, sizes[n]["operations"].get(name, {}).get("median_s")) for n in ns]
        pts = [(n, t) for n, t in pts if t]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("layers (N)")
    ax.set_ylabel("wall time, median (s)")
    ax.set_title("honua-plan: time against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(report: dict[str, Any], out: Path, stem: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    md = render_markdown(report)
    (out / "report.json").write_text(text)
    (out / "report.md").write_text(md)
    has_plot = plot(report, out / "scaling.png")
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(text)
        stem.with_suffix(".md").write_text(md)
        if has_plot:
            shutil.copyfile(out / "scaling.png", stem.with_suffix(".png"))


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated numbers of layers (default: %(default)s)")
    p.add_argument("--runs", type=int, default=3, help="runs per operation (median reported)")
    p.add_argument("--out", default="benchmarks/out", help="directory for report.json/.md, scaling.png, logs")
    p.add_argument("--report", default=None, help="also write STEM.json/.md/.png (e.g. benchmarks/report)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before a run is killed")
    p.add_argument("--apply-timeout", type=float, default=300,
                   help="seconds before an apply run is killed (larger sizes are then skipped)")
    p.add_argument("--keep", action="store_true", help="keep the generated repositories and databases")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="servers to measure each size with: none (the engine alone), pygeoapi (default: %(default)s)")
    p.add_argument("--render", default=None, metavar="REPORT_JSON",
                   help="only render REPORT_JSON again (Markdown, plot) into --out / --report")
    p.add_argument("--merge", default=None,
                   help="start from this report.json: its sizes are kept unless measured again")
    args = p.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    if not args.servers or set(args.servers) - set(SERVERS):
        p.error(f"--servers: choose from {', '.join(SERVERS)}")
    out = Path(args.out)
    if args.render:
        rendered: dict[str, Any] = json.loads(Path(args.render).read_text())
        rendered["budgets"] = evaluate_budgets({int(k): v for k, v in rendered["sizes"].items()})
        write_outputs(rendered, out, Path(args.report) if args.report else None)
        print(render_markdown(rendered))
        return 0

    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

    # SIGTERM (a CI timeout, kill) ends like Ctrl-C: the cluster is stopped and removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="honua-bench-"))
    os.chmod(workdir, 0o755)  # the server runs as an unprivileged user
    cluster = EmbeddedCluster(workdir / "pg", fast=True)
    print(f"starting a throwaway PostGIS under {workdir / 'pg'} ...")
    cluster.start()
    report: dict[str, Any] = {
        "format": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "settings": {"sizes": sizes, "runs": args.runs, "apply_timeout_s": args.apply_timeout,
                     "layers_per_service": generate.LAYERS_PER_SERVICE, "max_rows": generate.MAX_ROWS},
        "machine": machine_info(cluster),
        "import_time": import_time(),
        "calibration": {"before_s": calibrate()},
        "sizes": {},
    }
    results: dict[int, dict[str, Any]] = {}
    if args.merge:
        previous = json.loads(Path(args.merge).read_text())
        for k, v in previous.get("sizes", {}).items():
            if int(k) not in sizes:
                results[int(k)] = v
        report["merged_from"] = {"file": args.merge, "started_at": previous.get("started_at"),
                                 "sizes": sorted(results)}
        report["sizes"] = {str(k): v for k, v in sorted(results.items())}
    skip_apply: str | None = None
    try:
        for n in sorted(sizes):
            results[n] = bench_size(args, workdir, cluster, n, skip_apply)
            report["sizes"] = {str(k): v for k, v in sorted(results.items())}
            a = results[n]["operations"].get("apply", {})
            if a.get("status") == "timeout" and skip_apply is None:
                skip_apply = f"apply did not finish within {args.apply_timeout:.0f} s at N={n:,}"
            report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            report["budgets"] = evaluate_budgets(results)
            write_outputs(report, out, Path(args.report) if args.report else None)  # partial results too
    finally:
        report["calibration"]["after_s"] = calibrate()
        if "budgets" in report:  # at least one size was measured
            write_outputs(report, out, Path(args.report) if args.report else None)
        cluster.destroy()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nreport: {out / 'report.md'}" + (f" and {args.report}.md" if args.report else ""))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
