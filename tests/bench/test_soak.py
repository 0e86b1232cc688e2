"""The soak bench (bench/soak.py) at test size, on the session's live system:
two rounds of Task API starts while the vhost's broker connections are closed
and gunicorn workers SIGKILLed; every accepted start ends in SUCCESS, no 5xx.
The PostgreSQL pass runs it again on PostgreSQL.  The 30-minute runs on both
databases are in docs/soak.md."""

from __future__ import annotations

import pytest

from bench import soak

# Under the live system's default start throttle (120/min per user): the
# faults, not the limit, are what is tested.
STARTS = 30


@pytest.mark.live
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
# The live system's start counts too: on a loaded machine it alone took 2 min.
@pytest.mark.timeout(900)
def test_two_rounds_under_faults_lose_no_accepted_start_and_answer_no_5xx(live_system):
    from bench.common import operator_token

    rounds = soak.soak(live_system, operator_token("soak"), rounds=2, minutes=None,
                       starts=STARTS, clients=8, close_every=0.5, kill_every=2.0,
                       poll_timeout=240, log=lambda *args, **kwargs: None)
    text = "\n".join([soak.HEADER, *map(soak.row_line, rounds)])
    print("\n" + text)
    assert [r.number for r in rounds] == [1, 2]
    for row in rounds:
        # A loaded machine boots gunicorn workers slower than one is killed
        # every 2 s: many starts go unanswered (never accepted), some are accepted.
        assert row.accepted > 0, text
        assert (row.succeeded, row.not_succeeded, row.server_errors) == (row.accepted, 0, 0), text
        assert row.server_error_codes == {} and 0 <= row.unpublished <= row.accepted, text
        assert row.accepted + row.unanswered + sum(row.other_answers.values()) == STARTS, text
        # Every program's tree was measured, the faults happened.
        assert set(row.rss_mb) == set(live_system.program_names()), text
        assert all(mb > 10 for mb in row.rss_mb.values()), text
    assert sum(r.connections_closed for r in rounds) > 0, text
    assert sum(r.web_workers_killed for r in rounds) > 0, text
    live_system.wait_running(["web"], timeout=120)


def test_the_verdict_fails_on_a_lost_start_a_5xx_or_grown_rss():
    def row(number, *, lost=0, errors=0, web=100.0):
        return soak.Round(number=number, accepted=10, succeeded=10 - lost, not_succeeded=lost,
                          server_errors=errors, rss_mb={"web": web, "beat": 80.0})

    clean = [row(1, web=90), row(2), row(3), row(4, web=109.9)]
    assert soak.ok(clean)
    assert not soak.ok([*clean[:3], row(4, lost=1)])
    assert not soak.ok([*clean[:3], row(4, errors=1)])
    # The end against round 3, not against a smaller round 1.
    assert not soak.ok([*clean[:3], row(4, web=110.1)])
    assert soak.rss_verdict(clean)["web"] == (100.0, 109.9, True)
    # With 3 rounds the end is compared with round 2, and the report says so.
    three = [row(1, web=50), row(2, web=100), row(3, web=109)]
    assert soak.rss_verdict(three)["web"] == (100.0, 109.0, True)

    class Args:
        starts, clients, close_every, kill_every, poll_timeout = 10, 1, 0.5, 2.0, 10.0

    text = soak.report(three, database_kind="sqlite", started="now", minutes=1.0, args=Args)
    assert "RSS, round 2 -> round 3" in text


def test_each_5xx_is_reported_by_its_status_and_json_code():
    class Answer:
        def __init__(self, status_code, body):
            self.status_code, self._body = status_code, body

        def json(self):
            if self._body is None:
                raise ValueError("not JSON")
            return self._body

    row = soak.Round(number=1)
    for answer in (Answer(503, {"code": "broker_unavailable", "detail": "..."}),
                   Answer(503, {"code": "broker_unavailable"}), Answer(502, None),
                   Answer(500, {"code": "error"})):
        soak.count_server_error(row, answer)
    assert row.server_errors == 4
    assert row.server_error_codes == {"503 broker_unavailable": 2, "502 no JSON": 1,
                                      "500 error": 1}
    assert "4 (500 error: 1, 502 no JSON: 1, 503 broker_unavailable: 2)" in soak.row_line(row)
    assert not soak.ok([soak.Round(number=1, accepted=1, succeeded=1, server_errors=1,
                                   server_error_codes={"503 broker_unavailable": 1})])


def test_keep_leaves_the_run_directory_and_without_it_it_is_removed():
    import shutil
    from pathlib import Path

    with soak.run_directory("sqlite", keep=True) as kept:
        (Path(kept) / "log").mkdir()
    with soak.run_directory("sqlite", keep=False) as removed:
        pass
    try:
        assert (Path(kept) / "log").is_dir() and not Path(removed).exists()
    finally:
        shutil.rmtree(kept)
