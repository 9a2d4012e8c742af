-- Version 3: periodic schedules' progress, and the index job retention prunes by.

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
