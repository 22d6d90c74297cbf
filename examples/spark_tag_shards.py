#!/usr/bin/env python3
"""Tag a JSON-lines corpus with `kpg tag --shard I/N` as N Spark tasks, then merge the parts.

    pip install pyspark   # and Java 17+ (Debian 12: apt-get install openjdk-17-jre-headless)
    python examples/spark_tag_shards.py --input examples/abstracts.jsonl --out-dir runs/spark \\
        --shards 3 --kpg target/release/kpg [-- EXTRA KPG TAG ARGS]

`sc.parallelize(range(N), N).map(tag_shard)`: one partition, so one task, per shard. --master
defaults to local[2,4] (two task slots, and a task tried up to 4 times: plain local[2] never
retries one); under spark-submit pass --master '' to keep its master. spark.task.cpus is
--cpus-per-task, which is also kpg's RAYON_NUM_THREADS.

Each task runs `kpg tag --input IN --shard i/N --output OUT_DIR/part-0000i-of-0000N.jsonl
--resume`; a task whose kpg was killed by a signal raises, so Spark retries it, and with --resume
the retry goes on from the last complete line. Rerunning the script resumes every part the same
way. A part written for another N, input or models is refused (kpg exits 2): use a fresh
--out-dir, or delete it.

kpg's exit status: 0, every record tagged; 1, some records got `{"id", "error"}` lines (counted
and reported; the run still succeeds unless --strict); 2, fatal (this script fails).

Line k of part i is input record i + k*N (records count non-blank input lines), so the parts
merge back into input order round-robin; --merged (default OUT_DIR/merged.jsonl) is then
byte-for-byte what one `kpg tag --input IN --output FILE` writes.

On a cluster: --input, --out-dir and the kpg binary (and the models: pass --generator/--ranker
with absolute paths after `--`) must be at the same paths on every executor (shared storage).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from pyspark.sql import SparkSession


def part_path(out_dir, i, n):
    return os.path.join(out_dir, f"part-{i:05d}-of-{n:05d}.jsonl")


def run_shard(kpg, input_path, out_dir, i, n, extra, threads, cwd):
    """Runs one shard to completion: (i, exit status, kpg's last stderr lines, seconds)."""
    cmd = [kpg, "tag", "--input", input_path, "--shard", f"{i}/{n}",
           "--output", part_path(out_dir, i, n), "--resume", "--progress", "none", *extra]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd if os.path.isdir(cwd) else None,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          errors="replace")
    seconds = time.monotonic() - start
    tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
    if proc.returncode < 0:
        # Killed (the OOM killer, a lost executor): fail the task so that Spark retries it.
        raise RuntimeError(f"shard {i}/{n}: kpg killed by signal {-proc.returncode}: {tail}")
    return i, proc.returncode, tail, seconds


def merge_parts(out_dir, n, merged_path):
    """Round-robin merge: merged line k is line k // n of part k % n. Returns (records, errors)."""
    files = [open(part_path(out_dir, i, n), "rb") for i in range(n)]
    records = errors = 0
    tmp = merged_path + ".tmp"
    with open(tmp, "wb") as out:
        done = False
        while not done:
            for i, f in enumerate(files):
                line = f.readline()
                if not line:
                    done = True
                    break
                if not line.endswith(b"\n"):
                    raise SystemExit(f"{part_path(out_dir, i, n)}: torn last line "
                                     "(run again to resume)")
                records += 1
                if "error" in json.loads(line):
                    errors += 1
                out.write(line)
        # The first part to run out ends the round-robin: no part may have lines left (their
        # sizes then differ by at most one, larger ones first, as for one input split n ways).
        for i, f in enumerate(files):
            rest = f.read()
            f.close()
            if rest:
                raise SystemExit(f"{part_path(out_dir, i, n)}: has lines past the end of the "
                                 "round-robin; not one job's parts")
    os.replace(tmp, merged_path)
    return records, errors


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Arguments after `--` go to every `kpg tag`.")
    p.add_argument("--input", required=True,
                   help="JSON lines (.gz allowed) every executor can read")
    p.add_argument("--out-dir", required=True, help="directory for the parts (shared storage)")
    p.add_argument("--shards", type=int, required=True, help="N: number of shards / Spark tasks")
    p.add_argument("--kpg", default="kpg", help="kpg binary (default: kpg on PATH)")
    p.add_argument("--merged", help="merged output (default: OUT_DIR/merged.jsonl)")
    p.add_argument("--master", default="local[2,4]",
                   help="Spark master (default local[2,4]; '' keeps spark-submit's)")
    p.add_argument("--cpus-per-task", type=int, default=1,
                   help="spark.task.cpus, and kpg's RAYON_NUM_THREADS (default 1)")
    p.add_argument("--strict", action="store_true",
                   help="fail when any record got an error line (kpg exit status 1)")
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be at least 1")

    kpg = shutil.which(args.kpg) if os.sep not in args.kpg else os.path.abspath(args.kpg)
    if not kpg or not os.access(kpg, os.X_OK):
        p.error(f"--kpg {args.kpg}: not an executable (build it: cargo build --release)")
    input_path = os.path.abspath(args.input)
    out_dir = os.path.abspath(args.out_dir)
    merged = os.path.abspath(args.merged or os.path.join(out_dir, "merged.jsonl"))
    os.makedirs(out_dir, exist_ok=True)
    # The tasks run kpg from the driver's directory when it exists there, so that the default
    # models/generator and models/ranker resolve as they do for a plain `kpg tag`.
    cwd = os.getcwd()
    n, threads = args.shards, args.cpus_per_task

    start = time.monotonic()
    builder = SparkSession.builder.appName("kpg-tag-shards").config("spark.task.cpus", str(threads))
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    version = spark.version
    ready = time.monotonic()
    results = sorted(
        spark.sparkContext.parallelize(range(n), n)
        .map(lambda i: run_shard(kpg, input_path, out_dir, i, n, extra, threads, cwd))
        .collect())
    spark.stop()
    tagged = time.monotonic()

    fatal = [(i, tail) for i, rc, tail, _ in results if rc not in (0, 1)]
    for i, rc, tail, secs in results:
        last = tail.splitlines()[-1] if tail else ""
        print(f"shard {i}/{n}: exit {rc}, {secs:.1f} s: {last}")
    if fatal:
        for i, tail in fatal:
            print(f"shard {i}/{n} failed:\n{tail}", file=sys.stderr)
        sys.exit(2)
    records, errors = merge_parts(out_dir, n, merged)
    end = time.monotonic()
    print(f"spark {version}: {n} shards, {records} records ({errors} with an error line) merged "
          f"into {merged}; session {ready - start:.1f} s, tagging {tagged - ready:.1f} s, merge "
          f"{end - tagged:.1f} s, total {end - start:.1f} s")
    if errors and args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
