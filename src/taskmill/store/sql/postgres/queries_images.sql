-- Uploaded images. Reads go through the taskmill_images_state view (status and error
-- derived from the processing job until the image is finished).

-- name: insert_image
INSERT INTO taskmill_images (id, job_id, original, spec, webhook_url, idempotency_key)
VALUES (%(id)s::uuid, %(job_id)s::uuid, %(original)s::jsonb, %(spec)s::jsonb,
        %(webhook_url)s, %(key)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id

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
-- Re-runs of the processing job write the same values again (idempotent).
UPDATE taskmill_images
SET status = %(status)s, renditions = %(renditions)s::jsonb, error = %(error)s,
    completed_at = now()
WHERE id = %(id)s::uuid
RETURNING id

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
