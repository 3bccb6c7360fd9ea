"""argon2id verifications with more in flight than cores: what oversubscription costs.

Not a test: it prints. Run from the repository root::

    .venv/bin/python bench/argon2_threads.py [--seconds 6] [--threads 1 4]

For each ``--threads`` value, one process per core verifies with that many threads for
``--seconds`` (all started together) and the script prints verifications per second and
CPU per verification. It is the measurement behind ``core.passwords.limit_concurrency``
(at most cores / web workers hashes at once per process).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time

from argon2 import PasswordHasher


def _process(threads: int, seconds: float, queue: multiprocessing.Queue) -> None:
    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    digest = hasher.hash("x" * 12)
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def verify(index: int) -> None:
        while time.monotonic() < stop:
            hasher.verify(digest, "x" * 12)
            counts[index] += 1

    workers = [threading.Thread(target=verify, args=(i,)) for i in range(threads)]
    began = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((sum(counts), time.process_time() - began))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 1, 4])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for threads in args.threads:
        queue: multiprocessing.Queue = multiprocessing.Queue()
        processes = [multiprocessing.Process(target=_process, args=(threads, args.seconds, queue))
                     for _ in range(cores or 1)]
        for process in processes:
            process.start()
        results = [queue.get() for _ in processes]
        for process in processes:
            process.join()
        done, cpu = sum(r[0] for r in results), sum(r[1] for r in results)
        print(f"{cores} processes x {threads} threads: {done / args.seconds:6.1f} verifications/s,"
              f" {1000 * cpu / max(1, done):5.1f} ms CPU each")


if __name__ == "__main__":
    main()
