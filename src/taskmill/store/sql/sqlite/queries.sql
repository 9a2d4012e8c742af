-- Every SQL statement taskmill runs on SQLite, by name. Parameters are :name; times are
-- Unix seconds passed in as :now (one machine, one clock). Writers run in BEGIN IMMEDIATE
-- transactions, so two claimers can never take the same job.

-- name: schema_version_table
CREATE TABLE IF NOT EXISTS taskmill_schema (
    version    INTEGER PRIMARY KEY,
    applied_at REAL NOT NULL
)

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM taskmill_schema

-- name: record_schema_version
INSERT OR IGNORE INTO taskmill_schema (version, applied_at) VALUES (:version, :now)

-- name: insert_jobs
-- :jobs is one JSON array of job arrays, so any number of jobs is one statement.
-- A (task, idempotency_key) already stored is skipped and looked up afterwards; no
-- RETURNING, because the count of inserted rows tells whether any was skipped, and
-- returning every id cost a tenth of the statement.
INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s,
                           backoff, idempotency_key, created_at, scheduled_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7, value ->> 8, value ->> 9, :now, coalesce(value ->> 10, :now)
FROM json_each(:jobs) WHERE true
ON CONFLICT (task, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING

-- name: insert_job
-- One job without an idempotency key, in plain parameters: cheaper than a one-element
-- json_each, and it cannot conflict (jobs with a key go through insert_jobs).
INSERT INTO taskmill_jobs (id, task, queue, priority, args, kwargs, max_retries, timeout_s,
                           backoff, created_at, scheduled_at)
VALUES (:id, :task, :queue, :priority, :args, :kwargs, :max_retries, :timeout, :backoff, :now,
        coalesce(:scheduled, :now))

-- name: find_by_idempotency_keys
-- :keys is a JSON array of [task, idempotency_key] pairs: one query for a whole batch.
SELECT j.* FROM json_each(:keys) AS k
JOIN taskmill_jobs AS j ON j.task = k.value ->> 0 AND j.idempotency_key = k.value ->> 1

-- name: get_job
SELECT * FROM taskmill_jobs WHERE id = :id

-- name: list_jobs
SELECT * FROM taskmill_jobs
WHERE (:status IS NULL OR status = :status)
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit

-- name: cancel_job
UPDATE taskmill_jobs
SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'pending' THEN :now ELSE finished_at END,
    cancel_requested = 1
WHERE id = :id AND status IN ('pending', 'running')
RETURNING *

-- name: retry_job
UPDATE taskmill_jobs
SET status = 'pending', attempts = 0, scheduled_at = :now, started_at = NULL,
    finished_at = NULL, duration_s = NULL, worker = NULL, lease_expires_at = NULL,
    result = NULL, error = NULL, traceback = NULL, progress = NULL, progress_message = NULL,
    cancel_requested = 0
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING *

-- name: claim_jobs_any
UPDATE taskmill_jobs
SET status = 'running', attempts = attempts + 1, started_at = :now, worker = :worker_id,
    lease_expires_at = :now + :lease_s
WHERE id IN (
    SELECT id FROM taskmill_jobs
    WHERE status = 'pending' AND scheduled_at <= :now
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit
)
RETURNING id, attempts, task, args, kwargs, priority, scheduled_at, max_retries, backoff,
          timeout_s

-- name: claim_jobs_in_queues
UPDATE taskmill_jobs
SET status = 'running', attempts = attempts + 1, started_at = :now, worker = :worker_id,
    lease_expires_at = :now + :lease_s
WHERE id IN (
    SELECT id FROM taskmill_jobs
    WHERE status = 'pending' AND queue IN (SELECT value FROM json_each(:queues))
      AND scheduled_at <= :now
    ORDER BY priority DESC, scheduled_at, id
    LIMIT :limit
)
RETURNING id, attempts, task, args, kwargs, priority, scheduled_at, max_retries, backoff,
          timeout_s

-- name: finish_jobs
-- :outcomes is a JSON array of [id, attempt, status, result, error, traceback, started,
-- finished, retry_delay_s]. Applied only to the attempt that reported; a cancel requested
-- while the job ran wins over its outcome.
UPDATE taskmill_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE u.status END,
    result = u.result, error = u.error, traceback = u.traceback,
    started_at = u.started_at,
    finished_at = CASE WHEN u.status = 'pending' AND NOT j.cancel_requested
                       THEN NULL ELSE u.finished_at END,
    duration_s = u.finished_at - u.started_at,
    scheduled_at = CASE WHEN u.status = 'pending' THEN :now + u.retry_delay_s
                        ELSE j.scheduled_at END,
    progress = CASE WHEN u.status = 'completed' THEN 1.0 ELSE j.progress END,
    lease_expires_at = NULL
FROM (
    SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS status,
           nullif(value -> 3, 'null') AS result, value ->> 4 AS error,
           value ->> 5 AS traceback,
           value ->> 6 AS started_at, value ->> 7 AS finished_at, value ->> 8 AS retry_delay_s
    FROM json_each(:outcomes)
) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt

-- name: release_jobs
UPDATE taskmill_jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END,
    finished_at = CASE WHEN j.cancel_requested THEN :now END,
    attempts = j.attempts - 1, worker = NULL, started_at = NULL, lease_expires_at = NULL
FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt FROM json_each(:jobs)) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt

-- name: set_progress
UPDATE taskmill_jobs AS j
SET progress = u.progress, progress_message = u.message
FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS progress,
             value ->> 3 AS message FROM json_each(:updates)) AS u
WHERE j.id = u.id AND j.status = 'running' AND j.attempts = u.attempt

-- name: renew_leases
UPDATE taskmill_jobs SET lease_expires_at = :now + :lease_s
WHERE worker = :worker_id AND status = 'running'

-- name: cancel_requested
SELECT id, attempts FROM taskmill_jobs
WHERE worker = :worker_id AND status = 'running' AND cancel_requested

-- name: recover_expired_leases
UPDATE taskmill_jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts > max_retries THEN 'failed'
                  ELSE 'pending' END,
    error = CASE WHEN cancel_requested THEN error
                 ELSE 'worker lost: lease expired on ' || coalesce(worker, '?') END,
    finished_at = CASE WHEN cancel_requested OR attempts > max_retries THEN :now END,
    scheduled_at = :now, lease_expires_at = NULL
WHERE status = 'running' AND lease_expires_at < :now

-- name: next_due_in_any
SELECT min(scheduled_at) - :now AS due_in_s FROM taskmill_jobs WHERE status = 'pending'

-- name: next_due_in_queues
SELECT min(scheduled_at) - :now AS due_in_s FROM taskmill_jobs
WHERE status = 'pending' AND queue IN (SELECT value FROM json_each(:queues))

-- name: queue_counts
SELECT queue, status, count(*) AS count FROM taskmill_jobs GROUP BY queue, status

-- name: register_worker
INSERT INTO taskmill_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (:id, :host, :pid, :queues, :concurrency, :now, :now)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = :now, stopped_at = NULL

-- name: worker_heartbeat
UPDATE taskmill_workers SET heartbeat_at = :now WHERE id = :id

-- name: unregister_worker
UPDATE taskmill_workers SET stopped_at = :now WHERE id = :id


-- stats and API

-- name: job_stats
-- One scan serves /api/stats, `taskmill stats` and /metrics: per task, queue and state, the
-- jobs, the attempts they started, how many finished within the window, and their last
-- attempt's duration as a cumulative histogram. b0 < ... < b11 are the bucket bounds in
-- seconds (store/base.py DURATION_BOUNDS_S).
SELECT task, queue, status, count(*) AS jobs,
       coalesce(sum(attempts), 0) AS attempts,
       count(*) FILTER (WHERE attempts > 0) AS started_jobs,
       count(*) FILTER (WHERE finished_at >= :now - :window_s) AS finished_recently,
       count(duration_s) AS timed,
       coalesce(sum(duration_s), 0.0) AS duration_sum_s,
       count(*) FILTER (WHERE duration_s <= :b0) AS le_0,
       count(*) FILTER (WHERE duration_s <= :b1) AS le_1,
       count(*) FILTER (WHERE duration_s <= :b2) AS le_2,
       count(*) FILTER (WHERE duration_s <= :b3) AS le_3,
       count(*) FILTER (WHERE duration_s <= :b4) AS le_4,
       count(*) FILTER (WHERE duration_s <= :b5) AS le_5,
       count(*) FILTER (WHERE duration_s <= :b6) AS le_6,
       count(*) FILTER (WHERE duration_s <= :b7) AS le_7,
       count(*) FILTER (WHERE duration_s <= :b8) AS le_8,
       count(*) FILTER (WHERE duration_s <= :b9) AS le_9,
       count(*) FILTER (WHERE duration_s <= :b10) AS le_10,
       count(*) FILTER (WHERE duration_s <= :b11) AS le_11
FROM taskmill_jobs
GROUP BY task, queue, status

-- name: workers_online
SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at FROM taskmill_workers
WHERE stopped_at IS NULL AND heartbeat_at > :now - :within_s
ORDER BY started_at, id


-- scheduler

-- name: schedule_states
SELECT s.name, s.task, s.cron, s.tz, s.last_tick_at, s.last_job_id,
       j.status AS last_job_status
FROM taskmill_schedules AS s LEFT JOIN taskmill_jobs AS j ON j.id = s.last_job_id
WHERE :name IS NULL OR s.name = :name
ORDER BY s.name

-- name: start_schedule
-- First sight stores the schedule from :since. A changed definition restarts from :since,
-- never backwards; an unchanged one is not written at all.
INSERT INTO taskmill_schedules (name, task, cron, tz, last_tick_at)
VALUES (:name, :task, :cron, :tz, :since)
ON CONFLICT (name) DO UPDATE
SET task = excluded.task, cron = excluded.cron, tz = excluded.tz,
    last_tick_at = max(taskmill_schedules.last_tick_at, excluded.last_tick_at)
WHERE taskmill_schedules.task <> excluded.task OR taskmill_schedules.cron <> excluded.cron
   OR taskmill_schedules.tz <> excluded.tz

-- name: advance_schedule
-- Only forward: of schedulers racing on the same tick, one moves it and the rest change
-- nothing; a scheduler that read an older state cannot move it back.
UPDATE taskmill_schedules SET last_tick_at = :tick_at, last_job_id = :job_id
WHERE name = :name AND last_tick_at < :tick_at
RETURNING name

-- name: prune_jobs
-- Oldest finished first, in batches (taskmill_jobs_finished holds exactly these rows).
-- The status test is repeated outside: only final jobs are ever deleted.
DELETE FROM taskmill_jobs
WHERE id IN (
    SELECT id FROM taskmill_jobs
    WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :now - :older_than_s
    ORDER BY finished_at
    LIMIT :limit
) AND status IN ('completed', 'failed', 'cancelled')
