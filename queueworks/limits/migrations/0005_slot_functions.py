"""A concurrency limit's decisions as PostgreSQL functions
(queueworks/limits/concurrency_sql.py): taking a slot or parking the call,
and giving a slot back with the hand-over to the oldest parked calls.

One round trip each instead of a transaction of eight to ten statements.
The same decisions as queueworks/limits/concurrency.py and handoff.py take
in Python on SQLite.
"""

from django.db import migrations

TAKE = r"""
CREATE OR REPLACE FUNCTION queueworks_slot_take(
    p_limit text, p_key text, p_task_id text, p_grant text, p_running integer,
    p_lease double precision, p_since double precision, p_message jsonb,
    p_now double precision)
RETURNS text AS $$
DECLARE
    t double precision;
    moment timestamptz;
    held_grant text;
    waiter_id bigint;
    ahead boolean;
    live integer;
BEGIN
    UPDATE limits_limitkey SET tat = tat WHERE "limit" = p_limit AND "key" = p_key;
    IF NOT FOUND THEN
        INSERT INTO limits_limitkey ("limit", "key", tat, horizon, last_start)
            VALUES (p_limit, p_key, 0, 0, 0) ON CONFLICT DO NOTHING;
        UPDATE limits_limitkey SET tat = tat WHERE "limit" = p_limit AND "key" = p_key;
    END IF;
    t := COALESCE(p_now, extract(epoch FROM clock_timestamp()));
    moment := to_timestamp(t);
    SELECT "grant" INTO held_grant FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
    IF FOUND THEN
        IF held_grant <> p_grant THEN
            RETURN 'stale';
        END IF;
        UPDATE limits_concurrencyslot
            SET acquired_at = moment, expires_at = moment + make_interval(secs => p_lease)
            WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
        IF p_grant <> '' THEN
            DELETE FROM limits_limitwaiter
                WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
        END IF;
        PERFORM queueworks_limit_tally(p_limit, p_key, 1, 0,
            CASE WHEN p_since IS NULL THEN 0 ELSE GREATEST(0, t - p_since) END);
        RETURN 'run';
    END IF;
    SELECT id INTO waiter_id FROM limits_limitwaiter
        WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
    IF p_grant <> '' AND waiter_id IS NULL THEN
        RETURN 'stale';
    END IF;
    SELECT EXISTS (SELECT 1 FROM limits_limitwaiter
        WHERE "limit" = p_limit AND "key" = p_key AND state = 'parked'
          AND task_id <> p_task_id AND (waiter_id IS NULL OR id < waiter_id)) INTO ahead;
    DELETE FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key AND expires_at <= moment;
    SELECT count(*) INTO live FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key;
    IF live < p_running AND NOT ahead THEN
        INSERT INTO limits_concurrencyslot ("limit", "key", task_id, "grant", acquired_at,
                                            expires_at)
            VALUES (p_limit, p_key, p_task_id, '', moment,
                    moment + make_interval(secs => p_lease));
        IF waiter_id IS NOT NULL THEN
            DELETE FROM limits_limitwaiter WHERE id = waiter_id;
        END IF;
        PERFORM queueworks_limit_tally(p_limit, p_key, 1, 0,
            CASE WHEN p_since IS NULL THEN 0 ELSE GREATEST(0, t - p_since) END);
        RETURN 'run';
    END IF;
    IF waiter_id IS NOT NULL THEN
        UPDATE limits_limitwaiter SET state = 'parked', message = p_message, retry_at = moment
            WHERE id = waiter_id;
    ELSE
        INSERT INTO limits_limitwaiter ("limit", "key", task_id, since, retry_at, state, message)
            VALUES (p_limit, p_key, p_task_id, to_timestamp(COALESCE(p_since, t)), moment,
                    'parked', p_message);
    END IF;
    PERFORM queueworks_limit_tally(p_limit, p_key, 0, 1, 0);
    IF live < p_running THEN
        RETURN 'parked-free';  -- free slots, older calls waiting: hand them over
    END IF;
    RETURN 'parked';
END
$$ LANGUAGE plpgsql;
"""

RELEASE = r"""
CREATE OR REPLACE FUNCTION queueworks_slot_release(
    p_limit text, p_key text, p_task_id text, p_running integer, p_lease double precision)
RETURNS TABLE (woken_task_id text, woken_message jsonb, woken_grant text) AS $$
DECLARE
    moment timestamptz;
    live integer;
    free integer;
    w record;
    token text;
BEGIN
    UPDATE limits_limitkey SET tat = tat WHERE "limit" = p_limit AND "key" = p_key;
    DELETE FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key AND task_id = p_task_id;
    IF p_running IS NULL OR NOT EXISTS (SELECT 1 FROM limits_limitwaiter
            WHERE "limit" = p_limit AND "key" = p_key AND state = 'parked') THEN
        RETURN;
    END IF;
    moment := clock_timestamp();
    DELETE FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key AND expires_at <= moment;
    SELECT count(*) INTO live FROM limits_concurrencyslot
        WHERE "limit" = p_limit AND "key" = p_key;
    free := p_running - live;
    FOR w IN SELECT lw.id, lw.task_id, lw.message,
                    EXISTS (SELECT 1 FROM limits_concurrencyslot s WHERE s."limit" = p_limit
                            AND s."key" = p_key AND s.task_id = lw.task_id) AS holding
             FROM limits_limitwaiter lw
             WHERE lw."limit" = p_limit AND lw."key" = p_key AND lw.state = 'parked'
             ORDER BY lw.id LIMIT GREATEST(free, 0) + live LOOP
        EXIT WHEN free <= 0;
        IF w.holding OR w.message IS NULL THEN
            -- Another message of this call holds a slot (it runs), or nothing to publish.
            DELETE FROM limits_limitwaiter WHERE id = w.id;
            CONTINUE;
        END IF;
        token := md5(random()::text || clock_timestamp()::text || w.task_id);
        INSERT INTO limits_concurrencyslot ("limit", "key", task_id, "grant", acquired_at,
                                            expires_at)
            VALUES (p_limit, p_key, w.task_id, token, moment,
                    moment + make_interval(secs => p_lease));
        UPDATE limits_limitwaiter SET state = 'woken', retry_at = moment WHERE id = w.id;
        free := free - 1;
        woken_task_id := w.task_id;
        woken_message := w.message;
        woken_grant := token;
        RETURN NEXT;
    END LOOP;
END
$$ LANGUAGE plpgsql;
"""

TALLY = r"""
CREATE OR REPLACE FUNCTION queueworks_limit_tally(
    p_limit text, p_key text, p_started integer, p_refused integer,
    p_waited double precision)
RETURNS void AS $$
BEGIN
    INSERT INTO limits_limittally ("limit", "key", started, refused, waited_seconds)
        VALUES (p_limit, p_key, p_started, p_refused, p_waited)
        ON CONFLICT ("limit", "key") DO UPDATE SET
            started = limits_limittally.started + EXCLUDED.started,
            refused = limits_limittally.refused + EXCLUDED.refused,
            waited_seconds = limits_limittally.waited_seconds + EXCLUDED.waited_seconds;
END
$$ LANGUAGE plpgsql;
"""

DROP = """
DROP FUNCTION IF EXISTS queueworks_slot_take(text, text, text, text, integer,
    double precision, double precision, jsonb, double precision);
DROP FUNCTION IF EXISTS queueworks_slot_release(text, text, text, integer, double precision);
DROP FUNCTION IF EXISTS queueworks_limit_tally(text, text, integer, integer, double precision);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for function in (TALLY, TAKE, RELEASE):
            schema_editor.execute(function)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("limits", "0004_rate_decide_function"),
    ]

    operations = [migrations.RunPython(create, drop)]
