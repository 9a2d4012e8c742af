-- Uploaded images. Reads go through the taskmill_images_state view (status and error
-- derived from the processing job until the image is finished).

-- name: insert_image
INSERT INTO taskmill_images (id, job_id, original, spec, webhook_url, idempotency_key,
                             created_at)
VALUES (:id, :job_id, :original, :spec, :webhook_url, :key, :now)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id

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
-- Re-runs of the processing job write the same values again (idempotent).
UPDATE taskmill_images
SET status = :status, renditions = :renditions, error = :error, completed_at = :now
WHERE id = :id
RETURNING id

-- name: delete_image
DELETE FROM taskmill_images WHERE id = :id RETURNING *

-- name: expired_images
SELECT * FROM taskmill_images
WHERE created_at < :now - :older_than_s
ORDER BY created_at
LIMIT :limit

-- name: delete_images
DELETE FROM taskmill_images WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING id
