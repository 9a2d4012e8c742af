-- What the dashboard's API routes read: workers in detail, and throughput over time.
-- Ages and buckets use the server's now(), the clock that wrote the timestamps.

-- name: dashboard_workers
-- Workers that never said goodbye, however long they have been silent (back to
-- %(silent_kept_s)s): a silent one is stale and must be seen, not dropped. Stopped ones
-- stay for %(stopped_kept_s)s, so a worker that just went away is still on screen.
SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, stopped_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM taskmill_workers
WHERE (stopped_at IS NULL
       AND heartbeat_at > now() - make_interval(secs => %(silent_kept_s)s))
   OR stopped_at > now() - make_interval(secs => %(stopped_kept_s)s)
ORDER BY started_at, id

-- name: dashboard_running_jobs
-- The running jobs of these workers: the oldest %(per_worker)s of each, and how many each
-- runs in all (prefetched short jobs are running too, up to hundreds per worker). Reads
-- the taskmill_jobs_running index.
SELECT id::text, task, worker, started_at, progress, running
FROM (
    SELECT id, task, worker, started_at, progress,
           count(*) OVER (PARTITION BY worker) AS running,
           row_number() OVER (PARTITION BY worker ORDER BY started_at, id) AS n
    FROM taskmill_jobs
    WHERE status = 'running' AND worker = ANY(%(workers)s::text[])
) AS r
WHERE n <= %(per_worker)s
ORDER BY worker, started_at, id

-- name: dashboard_throughput
-- %(buckets)s buckets of %(bucket_s)s seconds (whole numbers), aligned to multiples of
-- %(bucket_s)s and ending with the one that holds now(); every bucket comes back, empty
-- ones with zeros. Per bucket: jobs that completed, jobs that failed, and retries: jobs
-- that finished (completed or failed) after more than one attempt, counted where they
-- finished, plus jobs waiting for another attempt, counted where their failed attempt
-- ended (started_at + duration_s).
WITH bounds AS (
    SELECT (floor(extract(epoch FROM now()) / %(bucket_s)s::bigint)::bigint
            - %(buckets)s::bigint + 1) * %(bucket_s)s::bigint AS first_s
), buckets AS (
    SELECT first_s + i * %(bucket_s)s::bigint AS start_s
    FROM bounds, generate_series(0, %(buckets)s::bigint - 1) AS i
), events AS (
    SELECT extract(epoch FROM j.finished_at)::float8 AS at_s, j.status,
           j.attempts > 1 AS retried
    FROM taskmill_jobs AS j, bounds
    WHERE j.status IN ('completed', 'failed') AND j.finished_at >= to_timestamp(first_s)
    UNION ALL
    SELECT extract(epoch FROM j.started_at)::float8 + coalesce(j.duration_s, 0), 'pending',
           true
    FROM taskmill_jobs AS j, bounds
    WHERE j.status = 'pending' AND j.attempts > 0 AND j.started_at IS NOT NULL
      AND extract(epoch FROM j.started_at)::float8 + coalesce(j.duration_s, 0) >= first_s
), counted AS (
    SELECT floor(at_s / %(bucket_s)s::bigint)::bigint * %(bucket_s)s::bigint AS start_s,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE retried) AS retried
    FROM events GROUP BY 1
)
SELECT b.start_s, coalesce(c.completed, 0) AS completed, coalesce(c.failed, 0) AS failed,
       coalesce(c.retried, 0) AS retried
FROM buckets AS b LEFT JOIN counted AS c ON c.start_s = b.start_s
ORDER BY b.start_s
