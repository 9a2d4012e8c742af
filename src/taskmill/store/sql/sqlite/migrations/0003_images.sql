-- Version 3: uploaded images. The processing job carries the status until the image
-- itself is finished; see queries_images.sql.

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

-- What clients see: an image is pending or running while its job is, and failed when its
-- job ended without finishing it (retries used up, timeout, cancel) - even when the worker
-- was killed before it could say so.
CREATE VIEW taskmill_images_state AS
SELECT i.id, i.job_id, i.original, i.renditions, i.spec, i.webhook_url, i.idempotency_key,
       i.created_at,
       CASE WHEN i.status <> 'pending' THEN i.status
            WHEN j.status IN ('failed', 'cancelled') THEN 'failed'
            WHEN j.status = 'running' THEN 'running'
            ELSE 'pending' END AS status,
       CASE WHEN i.status <> 'pending' THEN i.error
            WHEN j.status = 'failed' THEN coalesce(j.error, 'processing failed')
            WHEN j.status = 'cancelled' THEN 'processing was cancelled' END AS error,
       CASE WHEN i.status <> 'pending' THEN i.completed_at
            WHEN j.status IN ('failed', 'cancelled') THEN j.finished_at END AS completed_at
FROM taskmill_images AS i
LEFT JOIN taskmill_jobs AS j ON j.id = i.job_id;
