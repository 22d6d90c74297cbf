#!/usr/bin/env bash
# Runs the README's cluster recipes, examples/ray_tag_shards.py and examples/spark_tag_shards.py,
# on this machine (a local Ray from PyPI, PySpark in local mode) and checks that their merged
# outputs are byte-for-byte one single-process `kpg tag` of the same input. Not part of CI: it
# installs ray and pyspark from PyPI, and Spark needs a Java runtime (17 or later; Debian 12:
# apt-get install openjdk-17-jre-headless); without `java` on PATH the Spark cases are skipped.
#
#   tools/check-shard-recipes.sh            # KPG=target/release/kpg VENV=target/venv-shard-recipes
#
# Inputs: examples/abstracts.jsonl; the same with a blank line, a malformed record and one more
# record after it (kpg exits 1, the recipes report one error line); and 700 records (the examples
# renamed 100 times) for the kill test, where shard 1's kpg is killed with SIGKILL mid-run and
# the engine's retry must resume its part. Cases: N=3, N=1 and N=10 (more shards than records:
# empty parts), the kill test with N=2, and Ray once more against `ray start --head` (this script
# runs `ray stop` at the end, which stops every Ray of this user on the machine).
# Every kpg runs with RAYON_NUM_THREADS=1 and every task takes one CPU. Exit status: 0 when every
# case ran and matched, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
kpg=$(realpath "${KPG:-target/release/kpg}")
venv=${VENV:-target/venv-shard-recipes}
work=${WORK:-target/shard-recipes}
[ -x "$kpg" ] || { echo "no kpg at $kpg: cargo build --release, or set KPG" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet ray pyspark || exit 1
fi
py=$venv/bin/python
rm -rf "$work" && mkdir -p "$work"
export RAYON_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0

spark=1
command -v java > /dev/null || { spark=0; echo "no java on PATH: the Spark cases are skipped" >&2; }
echo "== $(date -u +%FT%TZ) on $(nproc) cores"
echo "kpg: $("$kpg" --version) ($kpg)"
echo "python: $("$py" --version 2>&1 | cut -d' ' -f2)"
"$py" -c 'import ray; print("ray:", ray.__version__)' || exit 1
[ $spark = 1 ] && { "$py" -c 'import pyspark; print("pyspark:", pyspark.__version__)' || exit 1; }
[ $spark = 1 ] && echo "java: $(java -version 2>&1 | head -1)"

# Inputs.
cp examples/abstracts.jsonl "$work/abstracts.jsonl"
{ cat examples/abstracts.jsonl; echo; echo '{"id": "broken", "title": "no end'
  echo '{"id": "ex-8", "title": "Sharded tagging", "abstract": "Records split round-robin over workers merge back in input order."}'; } > "$work/bad.jsonl"
"$py" - "$work/big.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open("examples/abstracts.jsonl") if l.strip()]
with open(sys.argv[1], "w") as out:
    for r in range(100):
        for rec in recs:
            out.write(json.dumps(dict(rec, id=f"{rec['id']}-{r}")) + "\n")
PY

failures=0
results=()
report() { results+=("$1"); echo "$1"; [ "${1#ok}" = "$1" ] && failures=$((failures + 1)); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# One single-process run per input: the reference.
for name in abstracts bad big; do
  t=$(now)
  "$kpg" tag --input "$work/$name.jsonl" --output "$work/$name.single.jsonl" --progress none 2> "$work/$name.single.log"
  rc=$?
  want=0; [ $name = bad ] && want=1
  if [ $rc = $want ]; then
    report "ok   single $name: exit $rc, $(wc -l < "$work/$name.single.jsonl") lines, $(secs "$t" "$(now)") s"
  else
    report "FAIL single $name: exit $rc (expected $want): $(tail -1 "$work/$name.single.log")"
  fi
done

# check ENGINE NAME N [EXTRA RECIPE ARGS]: one recipe run, compared with the single run.
check() {
  local engine=$1 name=$2 n=$3; shift 3
  local dir=$work/$engine-$name-$n${tag:-} t rc
  t=$(now)
  "$py" "examples/${engine}_tag_shards.py" --input "$work/$name.jsonl" --out-dir "$dir" --shards "$n" \
    --kpg "$kpg" "$@" > "$dir.log" 2>&1
  rc=$?
  local took; took=$(secs "$t" "$(now)")
  local summary; summary=$(grep -E '^(ray|spark) [0-9]' "$dir.log" | sed 's/ merged into.*;/;/')
  if [ $rc != 0 ]; then
    report "FAIL $engine $name N=$n${tag:-}: exit $rc after $took s (log: $dir.log)"
  elif cmp -s "$dir/merged.jsonl" "$work/$name.single.jsonl"; then
    report "ok   $engine $name N=$n${tag:-}: merged output byte-identical, $took s wall ($summary)"
  else
    report "FAIL $engine $name N=$n${tag:-}: merged output differs from the single run ($dir/merged.jsonl)"
  fi
}

# kill_check ENGINE: N=2 on the big input; SIGKILL shard 1's kpg once its part has a line.
kill_check() {
  local engine=$1 dir=$work/$1-big-2-kill part pid
  part=$dir/part-00001-of-00002.jsonl
  ( failures=0; tag=-kill check "$engine" big 2; exit $failures ) &
  local runner=$! rc
  for _ in $(seq 600); do [ -s "$part" ] && break; sleep 0.05; done
  pid=$(pgrep -f -- "--output $part" | head -1)
  if [ -n "$pid" ]; then
    kill -9 "$pid"
    echo "killed kpg $pid (shard 1/2) after $(wc -l < "$part") lines"
  fi
  wait $runner
  rc=$?
  # `check` ran in a subshell: its line above is not in the summary; this one is.
  if [ -z "$pid" ]; then
    report "FAIL $engine kill test: shard 1's kpg was not caught running"
  elif [ $rc = 0 ] && grep -q 'more were done by the run this one resumed' "$dir.log"; then
    report "ok   $engine kill test: the retried task resumed shard 1's part; merged output byte-identical"
  else
    report "FAIL $engine kill test: failed, or no retry resumed the part (log: $dir.log)"
  fi
}

for engine in ray spark; do
  [ $engine = spark ] && [ $spark = 0 ] && continue
  for n in 3 1 10; do check $engine abstracts $n; done
  check $engine bad 3
  grep -q '(1 with an error line)' "$work/$engine-bad-3.log" \
    || report "FAIL $engine bad N=3: the error line was not reported"
  kill_check $engine
done

# Ray once more, joining a cluster that `ray start --head` started.
if "$venv/bin/ray" start --head --num-cpus 2 --disable-usage-stats > "$work/ray-start.log" 2>&1; then
  trap '"$venv/bin/ray" stop > /dev/null 2>&1' EXIT
  tag=-cluster check ray abstracts 3 --address auto
  tag=
  "$venv/bin/ray" stop > /dev/null 2>&1
  trap - EXIT
else
  report "FAIL ray start --head (log: $work/ray-start.log)"
fi

echo "== summary"
printf '%s\n' "${results[@]}"
[ $spark = 0 ] && echo "Spark cases skipped: no java on PATH"
if [ $failures = 0 ]; then echo "all ${#results[@]} checks passed"; else echo "$failures FAILED"; exit 1; fi
