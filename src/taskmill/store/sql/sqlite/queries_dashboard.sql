-- What the dashboard's API routes read: workers in detail, and throughput over time.
-- Times are Unix seconds; :now is the caller's clock (one machine), as in queries.sql.

-- name: dashboard_workers
-- Workers that never said goodbye, however long they have been silent (back to
-- :silent_kept_s): a silent one is stale and must be seen, not dropped. Stopped ones stay
-- for :stopped_kept_s, so a worker that just went away is still on screen.
SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, stopped_at,
       :now - heartbeat_at AS heartbeat_age_s
FROM taskmill_workers
WHERE (stopped_at IS NULL AND heartbeat_at > :now - :silent_kept_s)
   OR stopped_at > :now - :stopped_kept_s
ORDER BY started_at, id

-- name: dashboard_running_jobs
-- The running jobs of these workers (:workers, a JSON array of ids): the oldest
-- :per_worker of each, and how many each runs in all (prefetched short jobs are running
-- too, up to hundreds per worker). Reads the taskmill_jobs_running index.
SELECT id, task, worker, started_at, progress, running
FROM (
    SELECT id, task, worker, started_at, progress,
           count(*) OVER (PARTITION BY worker) AS running,
           row_number() OVER (PARTITION BY worker ORDER BY started_at, id) AS n
    FROM taskmill_jobs
    WHERE status = 'running' AND worker IN (SELECT value FROM json_each(:workers))
)
WHERE n <= :per_worker
ORDER BY worker, started_at, id

-- name: dashboard_throughput
-- :buckets buckets of :bucket_s seconds (whole numbers), aligned to multiples of
-- :bucket_s and ending with the one that holds :now; every bucket comes back, empty ones
-- with zeros. Per bucket: jobs that completed, jobs that failed, and retries: jobs that
-- finished (completed or failed) after more than one attempt, counted where they
-- finished, plus jobs waiting for another attempt, counted where their failed attempt
-- ended (started_at + duration_s).
WITH RECURSIVE buckets(start_s) AS (
    SELECT (CAST(:now / :bucket_s AS INTEGER) - :buckets + 1) * :bucket_s
    UNION ALL
    SELECT start_s + :bucket_s FROM buckets WHERE start_s + :bucket_s <= :now
), events(at_s, status, retried) AS (
    SELECT finished_at, status, attempts > 1 FROM taskmill_jobs
    WHERE status IN ('completed', 'failed')
      AND finished_at >= (SELECT min(start_s) FROM buckets)
    UNION ALL
    SELECT started_at + coalesce(duration_s, 0), 'pending', 1 FROM taskmill_jobs
    WHERE status = 'pending' AND attempts > 0 AND started_at IS NOT NULL
      AND started_at + coalesce(duration_s, 0) >= (SELECT min(start_s) FROM buckets)
), counted AS (
    SELECT CAST(at_s / :bucket_s AS INTEGER) * :bucket_s AS start_s,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE retried) AS retried
    FROM events GROUP BY 1
)
SELECT b.start_s, coalesce(c.completed, 0) AS completed, coalesce(c.failed, 0) AS failed,
       coalesce(c.retried, 0) AS retried
FROM buckets AS b LEFT JOIN counted AS c ON c.start_s = b.start_s
ORDER BY b.start_s
