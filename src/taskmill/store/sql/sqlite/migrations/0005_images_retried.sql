-- Version 5: an image that failed reads as pending again once its job is retried by hand,
-- and follows the re-run (until now it read failed until the re-run finished).

DROP VIEW taskmill_images_state;
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
