-- The whole schema at the newest version, for fresh installs. migrations/ brings older
-- databases to the same place; tests/store/test_migrations.py proves the two agree.

CREATE TABLE taskmill_jobs (
    id               uuid PRIMARY KEY,
    task             text NOT NULL,
    queue            text NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    args             jsonb NOT NULL DEFAULT '[]',
    kwargs           jsonb NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL,
    timeout_s        double precision,
    backoff          double precision NOT NULL,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_s       double precision,
    worker           text,
    lease_expires_at timestamptz,
    result           jsonb,
    error            text,
    traceback        text,
    progress         double precision,
    progress_message text,
    cancel_requested boolean NOT NULL DEFAULT false
);

-- Claims read these in order: one index for workers serving every queue, one for workers
-- bound to queues. Partial, so they hold only the pending jobs and stay small.
CREATE INDEX taskmill_jobs_claim_any ON taskmill_jobs (priority DESC, scheduled_at, id)
    WHERE status = 'pending';
CREATE INDEX taskmill_jobs_claim_queue ON taskmill_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status = 'pending';
-- Heartbeats, cancel checks and lease recovery look only at running jobs.
CREATE INDEX taskmill_jobs_running ON taskmill_jobs (worker) WHERE status = 'running';
CREATE UNIQUE INDEX taskmill_jobs_idempotency ON taskmill_jobs (task, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE taskmill_workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       jsonb,
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);

-- One NOTIFY per INSERT statement (not per row), so idle workers wake within milliseconds
-- without polling; enqueue_many of 10,000 jobs sends one.
CREATE FUNCTION taskmill_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskmill_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskmill_jobs_inserted AFTER INSERT ON taskmill_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskmill_notify_jobs();

-- Retention deletes finished jobs oldest first; this holds exactly the rows it may delete.
CREATE INDEX taskmill_jobs_finished ON taskmill_jobs (finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- One row per periodic schedule: how far it got. Schedulers only move last_tick_at forward.
CREATE TABLE taskmill_schedules (
    name         text PRIMARY KEY,
    task         text NOT NULL,
    cron         text NOT NULL,
    tz           text NOT NULL,
    last_tick_at timestamptz NOT NULL,
    last_job_id  uuid
);

CREATE TABLE taskmill_images (
    id              uuid PRIMARY KEY,
    job_id          uuid NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'completed', 'failed')),
    original        jsonb NOT NULL,
    renditions      jsonb NOT NULL DEFAULT '{}',
    spec            jsonb NOT NULL,
    webhook_url     text,
    idempotency_key text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

CREATE UNIQUE INDEX taskmill_images_idempotency ON taskmill_images (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The hourly cleanup deletes the oldest first.
CREATE INDEX taskmill_images_created ON taskmill_images (created_at);

-- Images not finished yet: the few that `unsettled_images` looks through every minute.
CREATE INDEX taskmill_images_pending ON taskmill_images (created_at) WHERE status = 'pending';

-- What clients see. The record speaks once processing has finished the image, unless it
-- failed and its job was queued again since (retried by hand): then, as before it finished,
-- the image is pending or running while its job is, and failed when its job ended without
-- finishing it (retries used up, timeout, cancel) - even when the worker was killed before
-- it could say so - or is gone (pruned by job retention).
CREATE VIEW taskmill_images_state AS
SELECT id, job_id, original, renditions, spec, webhook_url, idempotency_key, created_at,
       CASE WHEN recorded THEN status
            WHEN job_status IS NULL OR job_status IN ('failed', 'cancelled') THEN 'failed'
            WHEN job_status = 'running' THEN 'running'
            ELSE 'pending' END AS status,
       CASE WHEN recorded THEN error
            WHEN job_status IS NULL THEN 'the processing job no longer exists'
            WHEN job_status = 'failed' THEN coalesce(job_error, 'processing failed')
            WHEN job_status = 'cancelled' THEN 'processing was cancelled' END AS error,
       CASE WHEN recorded THEN completed_at
            WHEN job_status IN ('failed', 'cancelled') THEN job_finished_at END AS completed_at
FROM (SELECT i.id, i.job_id, i.original, i.renditions, i.spec, i.webhook_url,
             i.idempotency_key, i.created_at, i.status, i.error, i.completed_at,
             j.status AS job_status, j.error AS job_error, j.finished_at AS job_finished_at,
             i.status <> 'pending'
             AND NOT coalesce(i.status = 'failed' AND j.scheduled_at > i.completed_at, FALSE)
             AS recorded
      FROM taskmill_images AS i
      LEFT JOIN taskmill_jobs AS j ON j.id = i.job_id) AS s;
