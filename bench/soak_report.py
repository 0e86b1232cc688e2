"""The soak bench's report (bench/soak.py): one table row per round, the
totals with each 5xx by its status and JSON code, the RSS trend, the verdict."""

from __future__ import annotations

from bench import common

RSS_TOLERANCE = 0.10
BASELINE_ROUND = 3


def baseline_round(count: int) -> int:
    """The round the end is compared with: round 3, or with fewer than 4 rounds
    the one before the last (round 1 of a single round)."""
    return min(BASELINE_ROUND, count - 1) if count > 1 else 1


def rss_verdict(results: list) -> dict[str, tuple[float, float, bool]]:
    """Per program: (baseline MB, end MB, within the tolerance)."""
    base = results[baseline_round(len(results)) - 1]
    end = results[-1]
    verdict = {}
    for name, start_mb in base.rss_mb.items():
        end_mb = end.rss_mb.get(name, 0.0)
        verdict[name] = (start_mb, end_mb, end_mb <= start_mb * (1 + RSS_TOLERANCE))
    return verdict


def ok(results: list) -> bool:
    return bool(results) and all(r.not_succeeded == 0 and r.server_errors == 0 and r.accepted
                                 for r in results) and \
        all(within for _, _, within in rss_verdict(results).values())


def server_errors_cell(count: int, codes: dict[str, int]) -> str:
    """"0", or the count and each code: "3 (500 error: 1, 503 broker_unavailable: 2)"."""
    if not codes:
        return str(count)
    return f"{count} ({', '.join(f'{key}: {n}' for key, n in sorted(codes.items()))})"


def row_line(row) -> str:
    rss = " ".join(f"{name}={mb:.0f}" for name, mb in row.rss_mb.items())
    return (f"| {row.number} | {row.accepted} | {row.unpublished} | {row.succeeded} | "
            f"{row.not_succeeded} | {server_errors_cell(row.server_errors, row.server_error_codes)} | "
            f"{row.unanswered} | "
            f"{row.accept_p50_ms:.0f} / "
            f"{row.accept_p99_ms:.0f} | {row.starts_per_second:.1f} | {row.settle_seconds:.0f} | "
            f"{row.connections_closed} / {row.web_workers_killed} | {row.load} | {rss} |")


HEADER = ("| round | accepted | of them unpublished | succeeded | not succeeded | 5xx (by code) "
          "| unanswered | accept p50 / p99 ms | accepted/s | settle s | closed / killed "
          "| load 1 5 15 | RSS MB per program |\n"
          "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|")


def report(results: list, *, database_kind: str, started: str, minutes: float,
           args) -> str:
    lines = [f"Soak on {database_kind}, started {started}, {minutes:.1f} min, "
             f"{common.machine()}",
             f"{args.starts} starts a round from {args.clients} threads; every broker connection "
             f"of the vhost closed every {args.close_every}s, a gunicorn worker SIGKILLed every "
             f"{args.kill_every}s; polled until SUCCESS ({args.poll_timeout:.0f}s at most)",
             "", HEADER, *(row_line(r) for r in results), ""]
    total = {k: sum(getattr(r, k) for r in results)
             for k in ("accepted", "unpublished", "succeeded", "not_succeeded", "server_errors",
                       "unanswered")}
    codes: dict[str, int] = {}
    for r in results:
        for key, count in r.server_error_codes.items():
            codes[key] = codes.get(key, 0) + count
    by_code = server_errors_cell(total["server_errors"], codes)
    lines.append(f"Total: {total['accepted']} accepted ({total['unpublished']} unpublished at "
                 f"first), {total['succeeded']} succeeded, {total['not_succeeded']} not "
                 f"succeeded, {by_code} x 5xx, {total['unanswered']} unanswered")
    lines.append(f"RSS, round {baseline_round(len(results))} -> round {len(results)} (limit +"
                 f"{RSS_TOLERANCE:.0%}):")
    for name, (start_mb, end_mb, within) in rss_verdict(results).items():
        change = (end_mb / start_mb - 1) if start_mb else 0.0
        lines.append(f"  {name:<16} {start_mb:7.1f} -> {end_mb:7.1f} MB ({change:+.1%})"
                     f"  {'ok' if within else 'GREW'}")
    lines.append(f"Verdict: {'PASS' if ok(results) else 'FAIL'}")
    return "\n".join(lines)
