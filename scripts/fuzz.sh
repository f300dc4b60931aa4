#!/usr/bin/env bash
# Fuzzes the readers of files Scroll is handed — GGUF models and session files — with
# libFuzzer, SECONDS each (default 3600), and prints each run's executions and findings.
#
#   scripts/fuzz.sh [SECONDS] [gguf|session ...]
#
# Builds Sources/scroll-fuzz with -sanitize=fuzzer,address into .build/fuzz, writes the
# starting corpora (the tiny reference model, a session of it) into .build/fuzz/corpus, and
# keeps what libFuzzer learns there. A crash leaves its input as .build/fuzz/crash-*:
# replay it with `SCROLL_FUZZ=TARGET .build/debug/scroll-fuzz FILE`, fix, and add it to the
# tests' cases.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
shift || true
[ "$#" -gt 0 ] && targets=("$@") || targets=(gguf session)
work=.build/fuzz
swift build --product scroll-fuzz >/dev/null
swift build --product scroll-fuzz --scratch-path "$work/build" -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
    -Xcc -fsanitize=fuzzer-no-link,address -Xswiftc -use-ld=lld >/dev/null
.build/debug/scroll-fuzz seed "$work/corpus"
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "$work/findings"
    echo "== $target: $seconds s"
    SCROLL_FUZZ=$target ASAN_OPTIONS=detect_leaks=0 "$work/build/debug/scroll-fuzz" "$work/corpus/$target" \
        -max_total_time="$seconds" -max_len=2000000 -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$work/findings/$target-" \
        -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss|Done|ERROR|SUMMARY|crash-|timeout-|oom-" || true
done
ls "$work/findings" 2>/dev/null | sed 's/^/finding: /' || true
