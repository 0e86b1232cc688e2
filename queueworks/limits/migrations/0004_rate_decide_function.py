"""The rate limit's decision as one PostgreSQL function (queueworks/limits/rate_sql.py).

One round trip per decision; the time is the database's, read once the row
is locked, so decisions are timed in the order they are taken (a time read
before waiting for the lock could let starts bunch up).  SQLite decides in
Python (queueworks/limits/rate.py).
"""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION queueworks_rate_decide(
    p_limit text, p_key text, p_interval double precision, p_tolerance double precision,
    p_defer_min double precision, p_task_id text, p_since double precision,
    p_now double precision)
RETURNS double precision AS $$
DECLARE
    r record;
    t double precision;
    retry double precision;
BEGIN
    SELECT id, tat, horizon INTO r FROM limits_limitkey
        WHERE "limit" = p_limit AND "key" = p_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO limits_limitkey ("limit", "key", tat, horizon, last_start)
            VALUES (p_limit, p_key, 0, 0, 0) ON CONFLICT DO NOTHING;
        SELECT id, tat, horizon INTO r FROM limits_limitkey
            WHERE "limit" = p_limit AND "key" = p_key FOR UPDATE;
    END IF;
    t := COALESCE(p_now, extract(epoch FROM clock_timestamp()));
    IF t >= r.tat - p_tolerance THEN
        UPDATE limits_limitkey SET tat = GREATEST(r.tat, t) + p_interval, last_start = t
            WHERE id = r.id;
        INSERT INTO limits_limittally ("limit", "key", started, refused, waited_seconds)
            VALUES (p_limit, p_key, 1, 0, CASE WHEN p_since IS NULL THEN 0
                                               ELSE GREATEST(0, t - p_since) END)
            ON CONFLICT ("limit", "key") DO UPDATE SET
                started = limits_limittally.started + 1,
                waited_seconds = limits_limittally.waited_seconds + EXCLUDED.waited_seconds;
        IF p_since IS NOT NULL THEN
            DELETE FROM limits_limitwaiter
                WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
        END IF;
        RETURN 0.0;
    END IF;
    retry := GREATEST(r.horizon + p_interval, r.tat - p_tolerance, t + p_defer_min);
    UPDATE limits_limitkey SET horizon = retry WHERE id = r.id;
    INSERT INTO limits_limittally ("limit", "key", started, refused, waited_seconds)
        VALUES (p_limit, p_key, 0, 1, 0)
        ON CONFLICT ("limit", "key") DO UPDATE SET refused = limits_limittally.refused + 1;
    INSERT INTO limits_limitwaiter ("limit", "key", task_id, since, retry_at, state)
        VALUES (p_limit, p_key, p_task_id, to_timestamp(COALESCE(p_since, t)),
                to_timestamp(retry), 'deferred')
        ON CONFLICT ("limit", "key", task_id) DO UPDATE SET retry_at = EXCLUDED.retry_at;
    RETURN retry - t;
END
$$ LANGUAGE plpgsql;
"""

DROP = ("DROP FUNCTION IF EXISTS queueworks_rate_decide(text, text, double precision, "
        "double precision, double precision, text, double precision, double precision);")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("limits", "0003_handoff"),
    ]

    operations = [migrations.RunPython(create, drop)]
