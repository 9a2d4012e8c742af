-- Version 4: an image whose job ended without finishing it is settled (recorded failed,
-- its webhook sent) by the images.settle periodic task; a pruned job reads as failed.

-- Images not finished yet: the few that `unsettled_images` looks through every minute.
CREATE INDEX taskmill_images_pending ON taskmill_images (created_at) WHERE status = 'pending';

-- What clients see: an image is pending or running while its job is, and failed when its
-- job ended without finishing it (retries used up, timeout, cancel) - even when the worker
-- was killed before it could say so - or is gone (pruned by job retention).
CREATE OR REPLACE VIEW taskmill_images_state AS
SELECT i.id, i.job_id, i.original, i.renditions, i.spec, i.webhook_url, i.idempotency_key,
       i.created_at,
       CASE WHEN i.status <> 'pending' THEN i.status
            WHEN j.id IS NULL OR j.status IN ('failed', 'cancelled') THEN 'failed'
            WHEN j.status = 'running' THEN 'running'
            ELSE 'pending' END AS status,
       CASE WHEN i.status <> 'pending' THEN i.error
            WHEN j.id IS NULL THEN 'the processing job no longer exists'
            WHEN j.status = 'failed' THEN coalesce(j.error, 'processing failed')
            WHEN j.status = 'cancelled' THEN 'processing was cancelled' END AS error,
       CASE WHEN i.status <> 'pending' THEN i.completed_at
            WHEN j.status IN ('failed', 'cancelled') THEN j.finished_at END AS completed_at
FROM taskmill_images AS i
LEFT JOIN taskmill_jobs AS j ON j.id = i.job_id;
