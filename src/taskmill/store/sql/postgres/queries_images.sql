-- Uploaded images. Reads go through the taskmill_images_state view (status and error
-- derived from the processing job until the image is finished).

-- name: insert_image
INSERT INTO taskmill_images (id, job_id, original, spec, webhook_url, idempotency_key)
VALUES (%(id)s::uuid, %(job_id)s::uuid, %(original)s::jsonb, %(spec)s::jsonb,
        %(webhook_url)s, %(key)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *

-- name: get_image
SELECT * FROM taskmill_images_state WHERE id = %(id)s::uuid

-- name: get_image_by_key
SELECT * FROM taskmill_images_state WHERE idempotency_key = %(key)s

-- name: list_images
SELECT * FROM taskmill_images_state
WHERE (%(before_id)s::uuid IS NULL OR id < %(before_id)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s

-- name: finish_image
-- Re-runs of the processing job write the same values again (idempotent). A finished
-- image reads the same from the table as from taskmill_images_state: no second read.
UPDATE taskmill_images
SET status = %(status)s, renditions = %(renditions)s::jsonb, error = %(error)s,
    completed_at = now()
WHERE id = %(id)s::uuid
RETURNING *

-- name: delete_image
DELETE FROM taskmill_images WHERE id = %(id)s::uuid RETURNING *

-- name: expired_images
SELECT * FROM taskmill_images
WHERE created_at < now() - make_interval(secs => %(older_than_s)s)
ORDER BY created_at
LIMIT %(limit)s

-- name: delete_images
DELETE FROM taskmill_images
WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text(%(ids)s::jsonb))
RETURNING id

-- name: unsettled_images
-- Images that read as failed while their own record is still pending: their job ended
-- without finishing them (a worker killed on the last attempt, a timeout, a cancel).
SELECT s.* FROM taskmill_images AS i
JOIN taskmill_images_state AS s ON s.id = i.id
WHERE i.status = 'pending' AND s.status = 'failed'
ORDER BY i.created_at
LIMIT %(limit)s

-- name: settle_image
-- Records what the state view derived, unless the image moved on meanwhile (finished by a
-- re-run of its job, or the job retried).
UPDATE taskmill_images AS i
SET status = 'failed', error = %(error)s,
    completed_at = coalesce(%(completed_at)s::timestamptz, now())
WHERE i.id = %(id)s::uuid AND i.status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM taskmill_jobs AS j
                  WHERE j.id = i.job_id AND j.status NOT IN ('failed', 'cancelled'))
RETURNING i.id
