"""The image benchmark: 12 MP and 24 MP JPEGs through the whole system (HTTP upload ->
worker with two children -> three renditions stored), next to baselines run in the same run:

    python -m bench.images [--count N] [--rounds R] [--orientation O] [--quick]

- naive Pillow: open, resize from full size for each rendition, save (what a first version
  of an image service does), in two processes, like the worker's two children;
- the bare pipeline: taskmill's own rendering (taskmill.images.processing.render), in two
  processes, with no queue, storage or records around it; and the same with the one-pass
  JPEG extension off (libvips alone), to show what the extension brings;
- the whole system: `taskmill api` and `taskmill worker -c 2` on SQLite and a local media
  folder; images/s from the first upload to the last image completed;
- the worker alone: the same worker stopped (SIGSTOP) while the images are uploaded, then
  let go; images/s from the jobs' own records, first start to last finish. Its time over
  the bare pipeline's is the system's overhead (queue, storage, records).

They run in alternating rounds (R, default 3) and each ratio is the median of the rounds'
ratios: a shared machine's speed drifts by tens of percent over a minute. `--orientation 6`
stores the photos as phones store portraits (EXIF-rotated); naive Pillow ignores that and
does less work than it should.

Memory: peak RSS of one process making the renditions of one 24 MP image (naive Pillow, the
bare pipeline) and the peak RSS (VmHWM) of the worker's children after the 24 MP run.

Targets (from the issue): whole system >= 3x naive Pillow's images/s; a worker child's peak
at 24 MP <= 40 % of naive Pillow's; the system's overhead over the bare pipeline <= 10 %.
Prints a table per size and writes bench/results/images-<timestamp>.json."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.common import (
    ROOT,
    Reporter,
    Row,
    machine_info,
    median,
    paired_ratio,
    ratio,
    results_table,
    scratch_dir,
    taskmill_script,
    write_json,
)
from bench.image_pipelines import bare_pipeline, bare_pipeline_libvips, make_photo, naive_pillow

SIZES = {"12 MP": (4240, 2832), "24 MP": (6000, 4000)}
PARALLEL = 2  # the worker runs -c 2; the baselines get the same two processes
API_URL = re.compile(r"API\s+(http://\S+?)/api/tasks")


# -- the baselines, in pool processes ------------------------------------------------------


def _pool_init() -> None:
    os.environ["VIPS_CONCURRENCY"] = "1"  # as worker children run


@contextlib.contextmanager
def baseline_pool(source: Path) -> Iterator[ProcessPoolExecutor]:
    """Two processes, like the worker's two children, kept for every round and warmed
    once for each baseline (imports, first decode)."""
    ctx = get_context("spawn")
    with ProcessPoolExecutor(PARALLEL, mp_context=ctx, initializer=_pool_init) as pool:
        for fn in (naive_pillow, bare_pipeline, bare_pipeline_libvips):
            list(pool.map(fn, [str(source)] * PARALLEL))
        yield pool


def images_per_s(pool: ProcessPoolExecutor, fn: Any, source: Path, count: int) -> float:
    started = time.perf_counter()
    list(pool.map(fn, [str(source)] * count))
    return count / (time.perf_counter() - started)


def peak_rss_mib(fn_name: str, source: Path) -> float:
    """Peak RSS of a fresh process that makes the renditions of `source` once: its VmHWM
    (ru_maxrss would not do: Linux carries the parent's peak into it across exec)."""
    code = (
        "import os, re, sys; os.environ['VIPS_CONCURRENCY'] = '1'; "
        f"from bench.image_pipelines import {fn_name}; {fn_name}(sys.argv[1]); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(source)], cwd=ROOT, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return int(done.stdout.strip()) / 1024


# -- the whole system -----------------------------------------------------------------------


class System:
    """`taskmill api` + `taskmill worker -c 2` on SQLite and a media folder under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "TASKMILL_DATABASE_URL": f"sqlite:///{root}/taskmill.db",
            "TASKMILL_STORAGE_URL": f"file://{root}/media",
            "TASKMILL_SECRET_KEY": "bench",
            "TASKMILL_MAX_UPLOAD_BYTES": "100MiB",
            "TASKMILL_MAX_IMAGE_PIXELS": "100000000",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.http: httpx.Client

    def __enter__(self) -> System:
        script = str(taskmill_script())
        subprocess.run([script, "migrate"], env=self.env, check=True, capture_output=True)
        self._start("api", [script, "api", "--port", "0"])
        self.url = self._wait_for_url()
        self.http = httpx.Client(base_url=self.url, timeout=120)
        return self

    def start_worker(self) -> None:
        self._start(
            "worker", [str(taskmill_script()), "worker", "-c", str(PARALLEL), "-Q", "images"]
        )

    def _start(self, name: str, argv: list[str]) -> None:
        with (self.root / f"{name}.log").open("wb") as log:
            self.procs.append(subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            ))  # fmt: skip

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = API_URL.search((self.root / "api.log").read_text(errors="replace"))
            if found:
                return found.group(1)
            time.sleep(0.1)  # polling a log file: there is no event to wait on
        raise RuntimeError("the API did not start: " + (self.root / "api.log").read_text())

    def worker_children_peak_mib(self) -> float:
        """The largest VmHWM among the worker's child processes."""
        worker = self.procs[1].pid
        peaks = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                if re.search(rf"^PPid:\s+{worker}$", status, re.MULTILINE):
                    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
                    if found:
                        peaks.append(int(found.group(1)) / 1024)
        return max(peaks, default=0.0)

    def upload(self, source: Path, count: int) -> list[str]:
        data = source.read_bytes()
        ids = []
        for _ in range(count):
            response = self.http.post("/api/images", files={"file": ("photo.jpg", data)})
            response.raise_for_status()
            ids.append(response.json()["id"])
        return ids

    def _db(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(sqlite3.connect(self.root / "taskmill.db"))

    def wait_completed(self, ids: list[str]) -> None:
        """Until every image is completed. Waits by reading the database file, not the
        API: polling the API would take CPU from the worker on the same cores, and the
        wait is the benchmark's, not a client's."""
        marks = ",".join("?" * len(ids))
        query = (
            f"SELECT status, count(*) FROM taskmill_images_state WHERE id IN ({marks}) GROUP BY 1"
        )
        with self._db() as db:
            while True:
                counts = dict(db.execute(query, ids).fetchall())
                if counts.get("failed"):
                    raise RuntimeError(f"{counts['failed']} images failed")
                if counts.get("completed") == len(ids):
                    return
                time.sleep(0.01)

    def end_to_end(self, source: Path, count: int) -> float:
        """Upload `count` copies while the worker runs; images/s until all completed."""
        started = time.perf_counter()
        self.wait_completed(self.upload(source, count))
        return count / (time.perf_counter() - started)

    def worker_alone(self, source: Path, count: int) -> float:
        """Images/s of the worker with no upload competing for the cores: the worker is
        stopped (SIGSTOP, idle between rounds) while `count` images are uploaded, then let
        go. Timed from the jobs' own records, first start to last finish: the queue,
        storage and record writes are all inside."""
        worker = self.procs[1].pid
        os.killpg(worker, signal.SIGSTOP)
        try:
            ids = self.upload(source, count)
        finally:
            os.killpg(worker, signal.SIGCONT)
        self.wait_completed(ids)
        marks = ",".join("?" * len(ids))
        with self._db() as db:  # SQLite keeps times as Unix seconds
            start, end = db.execute(
                "SELECT min(j.started_at), max(j.finished_at) FROM taskmill_images AS i "
                f"JOIN taskmill_jobs AS j ON j.id = i.job_id WHERE i.id IN ({marks})",
                ids,
            ).fetchone()
        return len(ids) / float(end - start)

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


# -- the run --------------------------------------------------------------------------------


def measure(
    size: str, source: Path, count: int, rounds: int, reporter: Reporter, root: Path
) -> list[Row]:
    system_root = root / size.replace(" ", "")
    system_root.mkdir()
    with System(system_root) as system:
        with reporter.step(f"{size}: worker start-up and warm-up"):
            warm_up = system.upload(source, PARALLEL)
            system.start_worker()
            system.wait_completed(warm_up)
        # Alternating rounds, so that drift on a shared machine hits all four alike.
        label = f"{size}: naive Pillow / bare pipeline (and libvips alone) / worker / whole"
        runs: dict[str, list[float]] = {
            "naive": [], "bare": [], "libvips": [], "worker": [], "whole": []
        }  # fmt: skip
        measures: dict[str, Callable[[], float]] = {
            "naive": lambda: images_per_s(pool, naive_pillow, source, count),
            "bare": lambda: images_per_s(pool, bare_pipeline, source, count),
            "libvips": lambda: images_per_s(pool, bare_pipeline_libvips, source, count),
            "worker": lambda: system.worker_alone(source, count),
            "whole": lambda: system.end_to_end(source, count),
        }
        with reporter.step(label, rounds * len(measures)) as step, baseline_pool(source) as pool:
            for _ in range(rounds):
                for name, run in measures.items():
                    runs[name].append(run())
                    step.advance()
        child_peak = system.worker_children_peak_mib()
    with reporter.step(f"{size}: peak memory of one image"):
        naive_peak = peak_rss_mib("naive_pillow", source)
        bare_peak = peak_rss_mib("bare_pipeline", source)
    naive, bare, libvips, worker_rate, whole = (
        median(runs[k]) for k in ("naive", "bare", "libvips", "worker", "whole")
    )
    speedup = paired_ratio(runs["whole"], runs["naive"])
    worker_share = paired_ratio(runs["worker"], runs["bare"])
    overhead = 1 / worker_share - 1
    rows = [
        Row("naive Pillow", f"{naive:.2f} images/s"),
        Row("bare pipeline", f"{bare:.2f} images/s", f"{naive:.2f}",
            paired_ratio(runs["bare"], runs["naive"])),
        Row("bare pipeline, libvips alone (one-pass JPEG off)", f"{libvips:.2f} images/s",
            f"{naive:.2f}", paired_ratio(runs["libvips"], runs["naive"])),
        Row("one pass over libvips alone", f"{bare:.2f} images/s", f"{libvips:.2f}",
            paired_ratio(runs["bare"], runs["libvips"])),
        Row("whole system", f"{whole:.2f} images/s", f"{naive:.2f}", speedup, ">= 300 %",
            speedup >= 3.0),
        Row("worker (queue + storage + records + render)", f"{worker_rate:.2f} images/s",
            f"{bare:.2f}", worker_share),
        Row("system overhead over bare pipeline", f"{overhead:.1%}", "", None, "<= 10 %",
            overhead <= 0.10),
        Row("peak RSS, naive Pillow (one image)", f"{naive_peak:.0f} MiB"),
        Row("peak RSS, bare pipeline (one image)", f"{bare_peak:.0f} MiB", f"{naive_peak:.0f} MiB",
            ratio(bare_peak, naive_peak)),
    ]  # fmt: skip
    if size == "24 MP":
        share = ratio(child_peak, naive_peak)
        rows.append(Row("peak RSS, worker child (VmHWM)", f"{child_peak:.0f} MiB",
                        f"{naive_peak:.0f} MiB", share, "<= 40 %",
                        share is not None and share <= 0.40))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=12, help="images per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument(
        "--orientation", type=int, default=1, choices=range(1, 9), metavar="O",
        help="EXIF orientation of the photos (6: a phone's portrait)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="4 images, 1 round")
    args = parser.parse_args(argv)
    count = 4 if args.quick else args.count
    rounds = 1 if args.quick else args.rounds
    console = Console() if sys.stdout.isatty() else Console(width=132)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "count": count,
        "rounds": rounds,
        "orientation": args.orientation,
        "sizes": {},
    }
    with scratch_dir("taskmill-bench-images-") as root, Reporter(console) as reporter:
        for size, (width, height) in SIZES.items():
            with reporter.step(f"{size}: making a {width}x{height} photo-like JPEG"):
                name = f"{size.replace(' ', '')}.jpg"
                source = make_photo(root / name, width, height, args.orientation)
            rows = measure(size, source, count, rounds, reporter, root)
            results["sizes"][size] = {"bytes": source.stat().st_size, "rows": rows}
            turned = f", EXIF orientation {args.orientation}" if args.orientation != 1 else ""
            title = f"images, {size} ({source.stat().st_size:,} bytes{turned})"
            console.print(results_table(title, rows))
    path = write_json(results, "images")
    console.print(f"results: {path}")
    failed = [r for s in results["sizes"].values() for r in s["rows"] if r.passed is False]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
