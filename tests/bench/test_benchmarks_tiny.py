"""The benchmark scripts keep working: each runs end to end at a tiny size.

Rates are not asserted (they depend on the machine and its load); only that
every system and every row was measured and reported, and that every task
sent was executed and none failed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.latency_http import PACED_RATE
from tests.support.live import PROJECT_ROOT

pytestmark = pytest.mark.live


def run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"bench/{script}", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_throughput_runs_every_system_and_reports_a_table(tmp_path):
    out = tmp_path / "throughput.json"
    result = run("throughput.py", "--tasks", "150", "--rounds", "1", "--json", str(out),
                 timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["system"] for r in data["results"]] == ["raw", "celery", "dramatiq", "project",
                                                      "main"]
    for row in data["results"]:
        assert len(row["drain"]) == len(row["live"]) == 1
        assert row["drain"][0] > 0 and row["live"][0] > 0
        assert row["rss_peak_mb"] > 0
        # An empty queue is not a finished run: every task of both modes was
        # executed (acknowledged at the broker) and none failed.
        assert row["sent"] == [300], row
        assert row["executed"] == row["sent"], (row["system"], row["executed"], row["sent"])
        assert row["failed"] == [0], (row["system"], row["failed"])
    producers = [p["producer"] for p in data["producers"]]
    assert any("tasks_enqueue_bulk" in p for p in producers)
    assert any("Dramatiq" in p for p in producers)
    assert any("the same Celery messages" in p for p in producers)
    table = result.stdout
    assert "| system | drain tasks/s |" in table
    assert "ratios: drain project/celery" in table
    assert "this project: the bulk lane as deployed" in table


def test_throughput_sizes_report_rabbitmq_figures_per_backlog(tmp_path):
    out = tmp_path / "throughput-sizes.json"
    result = run("throughput.py", "--only", "raw,dramatiq,project", "--sizes", "120,240",
                 "--live-max", "120", "--rounds", "1", "--no-producers", "--queue-policy", "v2",
                 "--json", str(out), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["sizes"] == [120, 240] and data["queue_policy"] == "v2"
    # Every system at the first size; only --scale-only's (raw, project) at the next.
    assert [(r["system"], r["tasks"]) for r in data["results"]] == [
        ("raw", 120), ("dramatiq", 120), ("project", 120), ("raw", 240), ("project", 240)]
    for row in data["results"]:
        # Above --live-max a size is drained only: one mode, not two.
        modes = 2 if row["tasks"] <= 120 else 1
        assert len(row["live"]) == (1 if modes == 2 else 0), row
        assert row["executed"] == [modes * row["tasks"]] and row["failed"] == [0], row
        # The drain's own CPU per task, one per round (a 120-task drain can
        # take less than a clock tick of the worker's CPU: not asserted > 0).
        assert len(row["cpu_worker_drain_us"]) == len(row["cpu_rabbit_drain_us"]) == 1, row
        [snapshot] = row["broker"]
        # The vhost policy reached the queue, and RabbitMQ saw the whole backlog.
        assert snapshot["queue_version"] == 2, snapshot
        assert snapshot["messages_seen"] >= row["tasks"], (row["system"], snapshot)
        assert snapshot["message_bytes_mb"] > 0 and snapshot["node_mem_limit_mb"] > 0
        assert snapshot["mem_alarm"] is False
    assert "Across the sizes" in result.stdout
    assert "| project | 240 |" in result.stdout


def test_producer_pieces_runs_every_variant_and_every_batch_arrives_whole(tmp_path):
    out = tmp_path / "producer_pieces.json"
    result = run("producer_pieces.py", "--tasks", "200", "--rounds", "2", "--json", str(out),
                 timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["results"]] == [
        "all on", "message_slimming off", "batched_frames off",
        "raw py-amqp, same messages prebuilt, confirms streamed"]
    for row in data["results"]:
        assert len(row["rate"]) == len(row["cpu_us"]) == 2
        assert all(rate > 0 for rate in row["rate"])
        # Every message of every batch was on the queue once it was confirmed.
        assert row["queued"] == [200, 200], row
    assert "| variant | tasks/s | x raw | piece's gain | producer CPU us/task |" in result.stdout
    assert "| batched_frames off |" in result.stdout


def test_latency_runs_http_and_queue_rows(tmp_path):
    out = tmp_path / "latency.json"
    result = run("latency.py", "--requests", "10", "--concurrency", "2", "--rate", "5",
                 "--seconds", "1", "--backlog", "2", "--backlog-seconds", "1",
                 "--pairs", "2", "--json", str(out), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert len(data["http"]) == 6
    paced = next(r for r in data["http"] if r["label"].endswith("req/s"))
    assert len(paced["enqueue_ms"]) == 10
    # Paced: never faster than its rate (a slow machine only makes it slower).
    assert paced["requests_per_s"] <= 1.2 * PACED_RATE
    bulk_one = next(r for r in data["http"] if r["label"].endswith("bulk/, 1 task"))
    assert len(bulk_one["enqueue_ms"]) == 10  # every response carried Server-Timing
    # The Task API's single start reports the publish and the whole service.
    single = next(r for r in data["http"] if r["label"].endswith("single start)"))
    assert len(single["enqueue_ms"]) == len(single["enqueue_cpu_ms"]) == len(
        single["start_ms"]) == 10
    # task_enqueue, the CPU-only control between its calls, apply_async; each
    # with wall and CPU time per call.
    assert [len(r["ms"]) for r in data["enqueue"]] == [10, 10, 10]
    assert [len(r["cpu_ms"]) for r in data["enqueue"]] == [10, 10, 10]
    assert data["enqueue"][1]["label"].startswith("control")
    labels = [r["label"] for r in data["start_latency"]]
    assert labels[0].startswith("main_worker")
    idle, loaded = data["start_latency"][-2:]
    assert idle["isolation"] == "idle" and loaded["isolation"] == "backlog"
    # Two alternating window pairs, 5 probes per window (1 s at 5/s).
    assert len(idle["window_p99"]) == len(loaded["window_p99"]) == 2
    assert len(idle["ms"]) == len(loaded["ms"]) == 10
    assert "Enqueue-to-start" in result.stdout
    assert "p99 ratio per window pair" in result.stdout


def test_sizes_are_bounded_with_a_clear_error():
    result = run("throughput.py", "--tasks", "10000000", timeout=60)
    assert result.returncode != 0
    assert "--tasks must be between 1 and" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("throughput.py", "--sizes", "20000,2000000", timeout=60)
    assert result.returncode != 0
    assert "--sizes must be between 1 and 1,000,000, got 2000000" in result.stderr
    result = run("throughput.py", "--sizes", "20000", "--scale-only", "raw,turbo", timeout=60)
    assert result.returncode != 0 and "--scale-only: unknown system(s) turbo" in result.stderr
    result = run("latency.py", "--requests", "0", timeout=60)
    assert result.returncode != 0 and "--requests must be between" in result.stderr
    result = run("latency.py", "--pairs", "0", timeout=60)
    assert result.returncode != 0 and "--pairs must be between" in result.stderr
    result = run("producer_pieces.py", "--pieces", "turbo", timeout=60)
    assert result.returncode != 0 and "--pieces: unknown piece(s) turbo" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_queues_bench_loses_nothing_and_reports_a_table():
    result = run("migrate_queues.py", "--messages", "200", "--unacked", "20", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = {line.split("  ")[0]: line.split()[-1] for line in result.stdout.splitlines()
             if "  " in line}
    assert lines["messages published before"] == "200"
    assert lines["missing (body+properties)"] == "0" and lines["extra / duplicated"] == "0"
    assert "queue           before   aside    back   after" in result.stdout


@pytest.mark.rabbitmq4
@pytest.mark.only_on_broker("rabbitmq4")
def test_migrate_queues_bench_turns_the_direct_exchange_into_a_topic_one_on_4x():
    """On the 4.x pass the topology declares quorum queues behind topic
    exchanges: the pre-declared direct ``celery`` exchange is replaced while
    the producer keeps publishing with confirms.  A publish the broker refused
    meanwhile is published again; nothing confirmed is missing or doubled."""
    result = run("migrate_queues.py", "--messages", "200", "--unacked", "20", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = {line.split("  ")[0].strip(): line.split("  ")[-1].strip()
             for line in result.stdout.splitlines() if "  " in line}
    assert lines["exchange type after"] == "topic", result.stdout
    assert "exchange celery deleted and declared topic" in result.stdout
    assert lines["missing (body+properties)"] == "0" and lines["extra / duplicated"] == "0"
    assert int(lines["published during the migration"]) > 0
    assert "x-queue-type': 'quorum'" in lines["queue arguments after"]


def test_queue_types_bench_compares_classic_and_quorum_on_one_node(tmp_path):
    from tests.support.rabbitmq4 import TEST_BROKER

    out = tmp_path / "queue_types.json"
    result = run("queue_types.py", "--broker", TEST_BROKER, "--tasks", "200", "--rounds", "1",
                 "--json", str(out), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    for queue_type in ("classic", "quorum"):
        (row,) = runs[queue_type]
        assert f"[{queue_type} queue]" in row["description"]
        assert row["drain"][0] > 0 and row["live"][0] > 0
        assert row["executed"] == row["sent"] and row["failed"] == [0], row
    assert "| quorum |" in result.stdout and "load before/after" in result.stdout


def test_main_lane_runs_its_variants_overtaking_and_memory(tmp_path):
    out = tmp_path / "main_lane.json"
    result = run("main_lane.py", "--tasks", "100", "--rounds", "1",
                 "--only", "celery,deployed,headroom-2,results-sqlite-upsert", "--backlog", "10",
                 "--probe-seconds", "0.01", "--memory-tasks", "200",
                 "--memory-variants", "deployed,no-timer-compaction", "--json", str(out),
                 timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["system"] for r in data["results"]] == ["celery", "deployed", "headroom-2",
                                                      "results-sqlite-upsert"]
    for row in data["results"]:
        assert row["drain"][0] > 0 and row["live"][0] > 0 and row["cpu_worker_us"][0] > 0
        assert row["executed"] == row["sent"] and row["failed"] == [0], row
    # Only the variants that differ in what the worker holds.
    assert [r["variant"] for r in data["overtaking"]] == ["deployed", "headroom-2"]
    assert all(0 <= r["before"] <= 10 for r in data["overtaking"])
    assert [m["variant"].split(" (")[0] for m in data["memory"]] == [
        "main_worker as deployed", "... cancelled time-limit timers kept until due"]
    assert all(m["tasks"] == 200 and m["after_mb"] > 0 for m in data["memory"])
    assert "| priority overtaking |" in result.stdout


def test_main_lane_solo_processes_run_every_task_and_let_priority_overtake(tmp_path):
    out = tmp_path / "main_lane_solo.json"
    result = run("main_lane.py", "--tasks", "100", "--rounds", "1",
                 "--only", "deployed,solo-procs,solo-procs-events", "--backlog", "10",
                 "--probe-seconds", "0.01", "--json", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    for row in data["results"]:
        assert row["drain"][0] > 0 and row["live"][0] > 0, row
        assert row["executed"] == row["sent"] and row["failed"] == [0], row
    assert [r["variant"] for r in data["overtaking"]] == ["deployed", "solo-procs"]
    # Two solo processes with prefetch 2 hold 4 messages, as prefork -c 2 +
    # headroom 2 does: once sent, a priority-9 task is overtaken by at most those.
    solo = data["overtaking"][1]
    assert 0 <= solo["overtook"] <= 4, solo


def test_cpu_policy_runs_every_policy(tmp_path):
    result = run("cpu_policy.py", "--probes", "1", "--windows", "1", "--seconds", "1",
                 "--rate", "5", "--clients", "2", "--web-policies", "normal,batch", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for policy in ("normal", "batch", "idle"):
        assert f"| {policy} |" in result.stdout
    # The start windows: per web server policy first (main_worker normal),
    # then per main_worker policy (web normal).
    starts = [line.split(" | ")[:2] for line in result.stdout.splitlines()
              if line.startswith("| ") and line.count(" | ") == 6]
    assert starts[2:] == [["| normal", "normal"], ["| normal", "batch"], ["| normal", "normal"],
                      ["| batch", "normal"], ["| idle", "normal"]], starts
    assert "p99 saturated / idle" in result.stdout


def test_balance_runs_static_and_balanced_on_the_same_workload(tmp_path):
    out = tmp_path / "balance.json"
    result = run("balance.py", "--tasks", "12", "--bursts", "2", "--queues", "2", "--budget", "4",
                 "--json", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    static, balanced = data["results"]
    assert (static["mode"], balanced["mode"]) == ("static", "balanced")
    # Every task sent was run and logged, in both modes, on the same schedule.
    assert static["tasks"] == balanced["tasks"] > 24
    assert static["moves"] == 0
    for row in (static, balanced):
        assert [lane["burst"]["n"] for lane in row["lanes"].values()] == [12, 12]
        assert row["total_seconds"] > 0
    assert "burst p95" in result.stdout and "load average" in result.stdout
    # The tiny bad size is refused with the option's name, not a traceback.
    refused = run("balance.py", "--tasks", "0", timeout=60)
    assert refused.returncode == 2 and "--tasks must be" in refused.stderr


def test_web_load_reports_every_server_class_endpoint_and_429s():
    result = run("web_load.py", "--parallel", "4", "--rounds", "1", "--contrast", timeout=300)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()
            if line.startswith(("gthread ", "sync "))]
    assert [(row[0], row[1]) for row in rows] == [
        (server, path) for server in ("gthread", "sync")
        for path in ("/health/", "/api/v1/tasks/", "/api/v1/workers/")]
    workers_rows = [row for row in rows if row[1] == "/api/v1/workers/"]
    assert all(row[2] == "4" and row[6] == "0" for row in workers_rows), workers_rows
