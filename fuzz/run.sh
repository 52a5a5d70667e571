#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 45 s each) on stable Rust with
# cargo-fuzz and no sanitizer, and prints the executions and crashes per target.
# Usage: fuzz/run.sh [SECONDS]   (installs cargo-fuzz if missing)
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-45}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none
mkdir -p artifacts logs
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  status=ok
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 > "logs/$t.log" 2>&1 || status=CRASH
  runs=$(grep -Eo 'Done [0-9]+ runs' "logs/$t.log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
  echo "$t: $runs executions in ${secs}s, $status"
done
