-- The whole schema at the newest version, for fresh installs. migrations/ brings older
-- databases to the same place; tests/store/test_migrations.py proves the two agree.
-- Times are Unix seconds (REAL, UTC); JSON columns are TEXT.

CREATE TABLE taskmill_jobs (
    id               TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    args             TEXT NOT NULL DEFAULT '[]',
    kwargs           TEXT NOT NULL DEFAULT '{}',
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    timeout_s        REAL,
    backoff          REAL NOT NULL,
    idempotency_key  TEXT,
    created_at       REAL NOT NULL,
    scheduled_at     REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    duration_s       REAL,
    worker           TEXT,
    lease_expires_at REAL,
    result           TEXT,
    error            TEXT,
    traceback        TEXT,
    progress         REAL,
    progress_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX taskmill_jobs_claim_any ON taskmill_jobs (priority DESC, scheduled_at, id)
    WHERE status = 'pending';
CREATE INDEX taskmill_jobs_claim_queue ON taskmill_jobs (queue, priority DESC, scheduled_at, id)
    WHERE status = 'pending';
CREATE INDEX taskmill_jobs_running ON taskmill_jobs (worker) WHERE status = 'running';
CREATE UNIQUE INDEX taskmill_jobs_idempotency ON taskmill_jobs (task, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE taskmill_workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT,
    concurrency  INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at   REAL
);

-- Retention deletes finished jobs oldest first; this holds exactly the rows it may delete.
CREATE INDEX taskmill_jobs_finished ON taskmill_jobs (finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- One row per periodic schedule: how far it got. Schedulers only move last_tick_at forward.
CREATE TABLE taskmill_schedules (
    name         TEXT PRIMARY KEY,
    task         TEXT NOT NULL,
    cron         TEXT NOT NULL,
    tz           TEXT NOT NULL,
    last_tick_at REAL NOT NULL,
    last_job_id  TEXT
);

CREATE TABLE taskmill_images (
    id              TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'completed', 'failed')),
    original        TEXT NOT NULL,
    renditions      TEXT NOT NULL DEFAULT '{}',
    spec            TEXT NOT NULL,
    webhook_url     TEXT,
    idempotency_key TEXT,
    error           TEXT,
    created_at      REAL NOT NULL,
    completed_at    REAL
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
