-- Every SQL statement taskmill runs on PostgreSQL, by name. Parameters are %(name)s.
-- State changes are guarded here (WHERE status ...), so the database alone keeps a job
-- consistent when workers, API servers and schedulers race.

-- name: schema_version_table
CREATE TABLE IF NOT EXISTS taskmill_schema (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migration_lock
-- Held to the end of the migrating transaction: two `taskmill migrate` at once take turns.
SELECT pg_advisory_xact_lock(7306351512281473)

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM taskmill_schema

-- name: record_schema_version
INSERT INTO taskmill_schema (version) VALUES (%(version)s) ON CONFLICT DO NOTHING

-- name: insert_jobs
-- One statement for any number of jobs. A (task, idempotency_key) already stored is
-- skipped here and looked up by find_by_idempotency_keys.
INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s,
                           backoff, idempotency_key, scheduled_at)
SELECT id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
       idempotency_key, coalesce(scheduled_at, now())
FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(priorities)s::integer[],
            %(args)s::jsonb[], %(kwargs)s::jsonb[], %(max_retries)s::integer[],
            %(timeouts)s::float8[], %(backoffs)s::float8[], %(keys)s::text[],
            %(scheduled)s::timestamptz[])
     AS t(id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
          idempotency_key, scheduled_at)
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, created_at

-- name: transaction_time
SELECT now() AS now

-- name: copy_jobs
-- Bulk path for batches without idempotency keys: nothing can conflict, and COPY is
-- several times faster than INSERT. Runs in a transaction after transaction_time, whose
-- now() is the created_at every row gets.
COPY taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s, backoff,
                    scheduled_at) FROM STDIN

-- name: insert_job
-- One job: plain parameters, because converting eleven one-element arrays costs more
-- than the insert itself.
INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s,
                           backoff, idempotency_key, scheduled_at)
VALUES (%(id)s::uuid, %(task)s, %(queue)s, %(priority)s, %(args)s::jsonb, %(kwargs)s::jsonb,
        %(max_retries)s, %(timeout)s::float8, %(backoff)s, %(key)s,
        coalesce(%(scheduled)s::timestamptz, now()))
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, created_at

-- name: find_by_idempotency_keys
SELECT j.* FROM taskmill_jobs AS j
JOIN unnest(%(tasks)s::text[], %(keys)s::text[]) AS k(task, idempotency_key)
  ON j.task = k.task AND j.idempotency_key = k.idempotency_key

-- name: get_job
SELECT * FROM taskmill_jobs WHERE id = %(id)s::uuid

-- name: list_jobs
-- The cursor is the last id of the previous page; ids grow with time (UUIDv7), so jobs
-- inserted while a client pages never shift the pages it has yet to read.
SELECT * FROM taskmill_jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(before_id)s::uuid IS NULL OR id < %(before_id)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s

-- name: cancel_job
-- A pending job is cancelled at once; a running one is marked and its worker kills it.
UPDATE taskmill_jobs
SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END,
    cancel_requested = true
WHERE id = %(id)s::uuid AND status IN ('pending', 'running')
RETURNING *

-- name: retry_job
-- Wakes idle workers like an insert does: the job is due now.
WITH retried AS (
    UPDATE taskmill_jobs
    SET status = 'pending', attempts = 0, scheduled_at = now(), started_at = NULL,
        finished_at = NULL, duration_s = NULL, worker = NULL, lease_expires_at = NULL,
        result = NULL, error = NULL, traceback = NULL, progress = NULL, progress_message = NULL,
        cancel_requested = false
    WHERE id = %(id)s::uuid AND status IN ('failed', 'cancelled')
    RETURNING *
), notified AS (
    SELECT pg_notify('taskmill_jobs', '') FROM retried
)
-- A CTE nobody reads is never run: the always-true test makes `notified` happen.
SELECT * FROM retried WHERE (SELECT count(*) FROM notified) >= 0

-- name: claim_jobs_any
-- Two claim statements, not one with an optional filter: each keeps a plan that walks
-- its own index in claim order.
-- SKIP LOCKED: concurrent claimers pass over each other's rows instead of queueing on them.
WITH no_flush AS (
    -- A claim needs no wait for the disk: lost in a crash, it leaves its jobs pending,
    -- as they were, and they run again (delivery is at least once). Outcomes stay durable.
    SELECT set_config('synchronous_commit', 'off', true)
), picked AS (
    SELECT id FROM taskmill_jobs
    WHERE status = 'pending' AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE taskmill_jobs AS j
SET status = 'running', attempts = j.attempts + 1, started_at = now(),
    worker = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM picked, no_flush WHERE j.id = picked.id
RETURNING j.id::text, j.attempts, j.task, j.args::text, j.kwargs::text, j.priority,
          extract(epoch FROM j.scheduled_at)::float8, j.max_retries, j.backoff, j.timeout_s

-- name: claim_jobs_in_queues
WITH no_flush AS (
    -- A claim needs no wait for the disk: lost in a crash, it leaves its jobs pending,
    -- as they were, and they run again (delivery is at least once). Outcomes stay durable.
    SELECT set_config('synchronous_commit', 'off', true)
), picked AS (
    SELECT id FROM taskmill_jobs
    WHERE status = 'pending' AND queue = ANY(%(queues)s::text[]) AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE taskmill_jobs AS j
SET status = 'running', attempts = j.attempts + 1, started_at = now(),
    worker = %(worker_id)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s)
FROM picked, no_flush WHERE j.id = picked.id
RETURNING j.id::text, j.attempts, j.task, j.args::text, j.kwargs::text, j.priority,
          extract(epoch FROM j.scheduled_at)::float8, j.max_retries, j.backoff, j.timeout_s

-- name: finish_jobs
-- %(outcomes)s is one JSON array of [id, attempt, status, result, error, traceback,
-- started, finished, retry_delay_s] (times in Unix seconds): a batch is one statement.
-- Applied only to the attempt that reported (a late report after lease recovery is
-- dropped); a cancel requested while the job ran wins over its outcome.
UPDATE taskmill_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE u.status END,
    result = u.result, error = u.error, traceback = u.traceback,
    started_at = u.started_at,
    finished_at = CASE WHEN u.status = 'pending' AND NOT j.cancel_requested
                       THEN NULL ELSE u.finished_at END,
    duration_s = extract(epoch FROM u.finished_at - u.started_at),
    scheduled_at = CASE WHEN u.status = 'pending'
                        THEN now() + make_interval(secs => u.retry_delay_s)
                        ELSE j.scheduled_at END,
    progress = CASE WHEN u.status = 'completed' THEN 1.0 ELSE j.progress END,
    lease_expires_at = NULL
FROM (
    SELECT (e ->> 0)::uuid AS id, (e ->> 1)::integer AS attempt, e ->> 2 AS status,
           nullif((e -> 3)::jsonb, 'null') AS result, e ->> 4 AS error, e ->> 5 AS traceback,
           to_timestamp((e ->> 6)::float8) AS started_at,
           to_timestamp((e ->> 7)::float8) AS finished_at, (e ->> 8)::float8 AS retry_delay_s
    FROM json_array_elements(%(outcomes)s::json) AS e
) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt

-- name: release_jobs
-- Graceful shutdown hands jobs back untouched: the attempt does not count.
WITH released AS (
    UPDATE taskmill_jobs AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END,
        finished_at = CASE WHEN j.cancel_requested THEN now() END,
        attempts = j.attempts - 1, worker = NULL, started_at = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)s::uuid[], %(attempts)s::integer[]) AS u(id, attempt)
    WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt
    RETURNING 1
)
SELECT count(*) AS released,
       CASE WHEN count(*) > 0 THEN pg_notify('taskmill_jobs', '') END AS notified
FROM released

-- name: set_progress
UPDATE taskmill_jobs AS j
SET progress = u.progress, progress_message = u.message
FROM unnest(%(ids)s::uuid[], %(attempts)s::integer[], %(progress)s::float8[],
            %(messages)s::text[]) AS u(id, attempt, progress, message)
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt

-- name: renew_leases
UPDATE taskmill_jobs
SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE worker = %(worker_id)s AND status = 'running'
RETURNING id, attempts, cancel_requested

-- name: cancel_requested
SELECT id, attempts FROM taskmill_jobs
WHERE worker = %(worker_id)s AND status = 'running' AND cancel_requested

-- name: recover_expired_leases
-- The attempt that was running counts; a job out of attempts fails with the reason.
WITH expired AS (
    SELECT id FROM taskmill_jobs
    WHERE status = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
), recovered AS (
    UPDATE taskmill_jobs AS j
    SET status = CASE WHEN j.cancel_requested THEN 'cancelled'
                      WHEN j.attempts > j.max_retries THEN 'failed'
                      ELSE 'pending' END,
        error = CASE WHEN j.cancel_requested THEN j.error
                     ELSE 'worker lost: lease expired on ' || coalesce(j.worker, '?') END,
        finished_at = CASE WHEN j.cancel_requested OR j.attempts > j.max_retries
                           THEN now() END,
        scheduled_at = now(), lease_expires_at = NULL
    FROM expired WHERE j.id = expired.id
    RETURNING j.status
)
SELECT count(*) AS recovered,
       CASE WHEN count(*) FILTER (WHERE status = 'pending') > 0
            THEN pg_notify('taskmill_jobs', '') END AS notified
FROM recovered

-- name: next_due_in_any
SELECT extract(epoch FROM min(scheduled_at) - now()) AS due_in_s
FROM taskmill_jobs WHERE status = 'pending'

-- name: next_due_in_queues
SELECT extract(epoch FROM min(scheduled_at) - now()) AS due_in_s
FROM taskmill_jobs WHERE status = 'pending' AND queue = ANY(%(queues)s::text[])

-- name: queue_counts
SELECT queue, status, count(*) AS count FROM taskmill_jobs GROUP BY queue, status

-- name: register_worker
INSERT INTO taskmill_workers (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL

-- name: worker_heartbeat
UPDATE taskmill_workers SET heartbeat_at = now() WHERE id = %(id)s

-- name: unregister_worker
UPDATE taskmill_workers SET stopped_at = now() WHERE id = %(id)s

-- name: listen
LISTEN taskmill_jobs


-- stats and API

-- name: job_stats
-- One scan serves /api/stats, `taskmill stats` and /metrics: per task, queue and state, the
-- jobs, the attempts they started, how many finished within the window, and their last
-- attempt's duration as a cumulative histogram. b0 < ... < b11 are the bucket bounds in
-- seconds (store/base.py DURATION_BOUNDS_S).
SELECT task, queue, status, count(*) AS jobs,
       coalesce(sum(attempts), 0) AS attempts,
       count(*) FILTER (WHERE attempts > 0) AS started_jobs,
       count(*) FILTER (WHERE finished_at >= now() - make_interval(secs => %(window_s)s))
           AS finished_recently,
       count(duration_s) AS timed,
       coalesce(sum(duration_s), 0.0) AS duration_sum_s,
       count(*) FILTER (WHERE duration_s <= %(b0)s) AS le_0,
       count(*) FILTER (WHERE duration_s <= %(b1)s) AS le_1,
       count(*) FILTER (WHERE duration_s <= %(b2)s) AS le_2,
       count(*) FILTER (WHERE duration_s <= %(b3)s) AS le_3,
       count(*) FILTER (WHERE duration_s <= %(b4)s) AS le_4,
       count(*) FILTER (WHERE duration_s <= %(b5)s) AS le_5,
       count(*) FILTER (WHERE duration_s <= %(b6)s) AS le_6,
       count(*) FILTER (WHERE duration_s <= %(b7)s) AS le_7,
       count(*) FILTER (WHERE duration_s <= %(b8)s) AS le_8,
       count(*) FILTER (WHERE duration_s <= %(b9)s) AS le_9,
       count(*) FILTER (WHERE duration_s <= %(b10)s) AS le_10,
       count(*) FILTER (WHERE duration_s <= %(b11)s) AS le_11
FROM taskmill_jobs
GROUP BY task, queue, status

-- name: workers_online
SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at FROM taskmill_workers
WHERE stopped_at IS NULL AND heartbeat_at > now() - make_interval(secs => %(within_s)s)
ORDER BY started_at, id


-- scheduler

-- name: schedule_states
SELECT s.name, s.task, s.cron, s.tz, s.last_tick_at, s.last_job_id,
       j.status AS last_job_status
FROM taskmill_schedules AS s LEFT JOIN taskmill_jobs AS j ON j.id = s.last_job_id
WHERE %(name)s::text IS NULL OR s.name = %(name)s
ORDER BY s.name

-- name: start_schedule
-- First sight stores the schedule from %(since)s. A changed definition restarts from
-- there, never backwards; an unchanged one is not written at all.
INSERT INTO taskmill_schedules AS s (name, task, cron, tz, last_tick_at)
VALUES (%(name)s, %(task)s, %(cron)s, %(tz)s, %(since)s)
ON CONFLICT (name) DO UPDATE
SET task = excluded.task, cron = excluded.cron, tz = excluded.tz,
    last_tick_at = greatest(s.last_tick_at, excluded.last_tick_at)
WHERE (s.task, s.cron, s.tz) IS DISTINCT FROM (excluded.task, excluded.cron, excluded.tz)

-- name: advance_schedule
-- Only forward: of schedulers racing on the same tick, one moves it and the rest change
-- nothing; a scheduler that read an older state cannot move it back.
UPDATE taskmill_schedules SET last_tick_at = %(tick_at)s, last_job_id = %(job_id)s::uuid
WHERE name = %(name)s AND last_tick_at < %(tick_at)s
RETURNING name

-- name: prune_jobs
-- Oldest finished first, in batches (taskmill_jobs_finished holds exactly these rows).
-- SKIP LOCKED: schedulers pruning at once take different rows, and a job being retried
-- right now is left alone; its new state is re-checked before the delete.
WITH doomed AS (
    SELECT id FROM taskmill_jobs
    WHERE status IN ('completed', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(older_than_s)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM taskmill_jobs AS j USING doomed
WHERE j.id = doomed.id AND j.status IN ('completed', 'failed', 'cancelled')
