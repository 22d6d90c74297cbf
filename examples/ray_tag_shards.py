#!/usr/bin/env python3
"""Tag a JSON-lines corpus with `kpg tag --shard I/N` as N Ray tasks, then merge the parts.

    pip install ray
    python examples/ray_tag_shards.py --input examples/abstracts.jsonl --out-dir runs/ray \\
        --shards 3 --kpg target/release/kpg [-- EXTRA KPG TAG ARGS]

`ray.init()` joins the cluster named by --address or RAY_ADDRESS (`auto`: the one `ray start
--head` started on this machine), else the last one `ray start` started here, and otherwise starts
a local Ray for this script alone.

Each task runs `kpg tag --input IN --shard i/N --output OUT_DIR/part-0000i-of-0000N.jsonl
--resume` with RAYON_NUM_THREADS set to its --cpus-per-task. Ray retries a task whose worker or
node dies (`max_retries`), and one whose kpg was killed by a signal; with --resume the retry goes
on from the last complete line. Rerunning the script after a failure resumes every part the same
way. A part written for another N, input or models is refused (kpg exits 2): use a fresh
--out-dir, or delete it.

kpg's exit status: 0, every record tagged; 1, some records got `{"id", "error"}` lines (counted
and reported; the run still succeeds unless --strict); 2, fatal (this script fails).

Line k of part i is input record i + k*N (records count non-blank input lines), so the parts
merge back into input order round-robin; --merged (default OUT_DIR/merged.jsonl) is then
byte-for-byte what one `kpg tag --input IN --output FILE` writes.

On a cluster: --input, --out-dir and the kpg binary (and the models: pass --generator/--ranker
with absolute paths after `--`) must be at the same paths on every node (shared storage), and
--cpus-per-task sets the cores each kpg gets.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import ray


class KpgKilled(RuntimeError):
    """kpg died from a signal (the OOM killer, a preempted node): worth a retry with --resume."""


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
        raise KpgKilled(f"shard {i}/{n}: kpg killed by signal {-proc.returncode}: {tail}")
    return i, proc.returncode, tail, seconds


def merge_parts(out_dir, n, merged_path):
    """Round-robin merge: merged line k is line k // n of part k % n. Returns (records, errors)."""
    files = [open(part_path(out_dir, i, n), "rb") for i in range(n)]
    counts = [0] * n
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
                counts[i] += 1
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
                                 f"round-robin (part sizes {counts} + more); not one job's parts")
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
    p.add_argument("--input", required=True, help="JSON lines (.gz allowed) every worker can read")
    p.add_argument("--out-dir", required=True, help="directory for the parts (shared storage)")
    p.add_argument("--shards", type=int, required=True, help="N: number of shards / Ray tasks")
    p.add_argument("--kpg", default="kpg", help="kpg binary (default: kpg on PATH)")
    p.add_argument("--merged", help="merged output (default: OUT_DIR/merged.jsonl)")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else the last "
                   "`ray start` here, else a new local Ray)")
    p.add_argument("--cpus-per-task", type=int, default=1,
                   help="Ray num_cpus of each task, and kpg's RAYON_NUM_THREADS (default 1)")
    p.add_argument("--max-retries", type=int, default=3, help="Ray retries per task (default 3)")
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
    # The workers run kpg from the driver's directory when it exists there, so that the default
    # models/generator and models/ranker resolve as they do for a plain `kpg tag`.
    cwd = os.getcwd()

    start = time.monotonic()
    ray.init(address=args.address, log_to_driver=False)
    ready = time.monotonic()
    task = ray.remote(run_shard).options(
        num_cpus=args.cpus_per_task, max_retries=args.max_retries, retry_exceptions=[KpgKilled])
    pending = [task.remote(kpg, input_path, out_dir, i, args.shards, extra, args.cpus_per_task, cwd)
               for i in range(args.shards)]
    results = sorted(ray.get(pending))
    ray.shutdown()
    tagged = time.monotonic()

    fatal = [(i, tail) for i, rc, tail, _ in results if rc not in (0, 1)]
    for i, rc, tail, secs in results:
        last = tail.splitlines()[-1] if tail else ""
        print(f"shard {i}/{args.shards}: exit {rc}, {secs:.1f} s: {last}")
    if fatal:
        for i, tail in fatal:
            print(f"shard {i}/{args.shards} failed:\n{tail}", file=sys.stderr)
        sys.exit(2)
    records, errors = merge_parts(out_dir, args.shards, merged)
    end = time.monotonic()
    print(f"ray {ray.__version__}: {args.shards} shards, {records} records ({errors} with an error "
          f"line) merged into {merged}; ray.init {ready - start:.1f} s, tagging "
          f"{tagged - ready:.1f} s, merge {end - tagged:.1f} s, total {end - start:.1f} s")
    if errors and args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
