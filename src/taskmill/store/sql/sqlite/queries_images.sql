-- Uploaded images. Reads go through the taskmill_images_state view (status and error
-- derived from the processing job until the image is finished).

-- name: insert_image
INSERT INTO taskmill_images (id, job_id, original, spec, webhook_url, idempotency_key,
                             created_at)
VALUES (:id, :job_id, :original, :spec, :webhook_url, :key, :now)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *

-- name: get_image
SELECT * FROM taskmill_images_state WHERE id = :id

-- name: get_image_by_key
SELECT * FROM taskmill_images_state WHERE idempotency_key = :key

-- name: list_images
SELECT * FROM taskmill_images_state
WHERE (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit

-- name: finish_image
-- Re-runs of the processing job write the same values again (idempotent). A finished
-- image reads the same from the table as from taskmill_images_state: no second read.
UPDATE taskmill_images
SET status = :status, renditions = :renditions, error = :error, completed_at = :now
WHERE id = :id
RETURNING *

-- name: delete_image
DELETE FROM taskmill_images WHERE id = :id RETURNING *

-- name: expired_images
SELECT * FROM taskmill_images
WHERE created_at < :now - :older_than_s
ORDER BY created_at
LIMIT :limit

-- name: delete_images
DELETE FROM taskmill_images WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING id

-- name: unsettled_images
-- Images that read as failed while their own record is still pending: their job ended
-- without finishing them (a worker killed on the last attempt, a timeout, a cancel).
SELECT s.* FROM taskmill_images AS i
JOIN taskmill_images_state AS s ON s.id = i.id
WHERE i.status = 'pending' AND s.status = 'failed'
ORDER BY i.created_at
LIMIT :limit

-- name: settle_image
-- Records what the state view derived, unless the image moved on meanwhile (finished by a
-- re-run of its job, or the job retried).
UPDATE taskmill_images
SET status = 'failed', error = :error, completed_at = coalesce(:completed_at, :now)
WHERE id = :id AND status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM taskmill_jobs AS j
                  WHERE j.id = taskmill_images.job_id AND j.status NOT IN ('failed', 'cancelled'))
RETURNING id
