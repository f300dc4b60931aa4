#!/usr/bin/env bash
# Scroll against llama.cpp, same model, same machine, one run:
#   scripts/bench-vs-llamacpp.sh [--rounds N] [--read TEXT] [--model GGUF] LLAMA_BIN_DIR...
# Each LLAMA_BIN_DIR is a llama.cpp build's bin/ (llama-bench, llama-perplexity), built
# outside this repo (see docs/benchmarks.md); none of it is committed. Given several builds,
# each figure is compared with the fastest build that runs on this host (older builds do not
# know newer architectures: b4747 predates gemma3). --model: another GGUF than the default.
#
# - pp512 and tg128 with 2 threads: llama-bench against `scroll bench`. Tools alternate, one
#   repetition each per round, so a noisy neighbour on a shared host (this machine's speed
#   moves by ±30% from minute to minute) hits all alike; the ratio is the median of the
#   per-round ratios. A build whose AMX path dies (SIGILL in the newest llama.cpp) is run
#   again with --repack 0.
# - with --read TEXT: reading the text, `llama-perplexity -c 2048` (its prompt-eval speed)
#   against `scroll "…" < TEXT` with the default flags (block memory on; tokens read over
#   the wall time, model load included), each once per round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=5
TEXT=""
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --read) TEXT=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $# -ge 1 ]] || { sed -n 2,17p "$0"; exit 2; }
BUILDS=("$@")
scripts/setup.sh >/dev/null
swift build -c release --product scroll >/dev/null
SCROLL=.build/release/scroll
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# llama-bench's JSON for one repetition; with --repack 0 when the default crashes.
llama_bench() {
    "$1/llama-bench" -m "$MODEL" -t 2 -p 512 -n 128 -r 1 -o json 2>/dev/null \
        || "$1/llama-bench" -m "$MODEL" -t 2 -p 512 -n 128 -r 1 -o json --repack 0 2>/dev/null || echo "[]"
}

# Prompt-eval tokens/s of llama-perplexity -c 2048 over the text; builds that no longer print
# it (0c1e570) get the tokens it read (chunks × 2048) over its wall time, load included, as
# Scroll's figure is.
llama_read() {
    local t0 t1 log rate chunks
    log="$OUT/llama-read.log"
    t0=$(date +%s.%N)
    "$1/llama-perplexity" -m "$MODEL" -t 2 -c 2048 -f "$TEXT" > "$log" 2>&1 || true
    t1=$(date +%s.%N)
    rate=$(sed -n 's/.*prompt eval time.*, *\([0-9.]*\) tokens per second.*/\1/p' "$log" | tail -1)
    chunks=$(sed -n 's/.*calculating perplexity over \([0-9]*\) chunks.*/\1/p' "$log" | head -1)
    if [[ -n $rate ]]; then echo "$rate"
    elif [[ -n $chunks ]] && grep -q 'Final estimate' "$log"; then python3 -c "print($chunks * 2048 / ($t1 - $t0))"
    fi
}

# Scroll's reading speed: tokens read (from its note on stderr) over the wall time.
scroll_read() {
    local t0 t1 tokens
    t0=$(date +%s.%N)
    "$SCROLL" -m "$MODEL" --threads 2 -n 1 --temp 0 "What is this text about?" < "$TEXT" > /dev/null 2> "$OUT/read.err"
    t1=$(date +%s.%N)
    tokens=$(sed -n 's/.*the input (\([0-9]*\) tokens).*/\1/p' "$OUT/read.err" | head -1)
    python3 -c "print(${tokens:-0} / ($t1 - $t0))"
}

for ((i = 0; i < ROUNDS; i++)); do
    for b in "${!BUILDS[@]}"; do llama_bench "${BUILDS[$b]}" > "$OUT/bench-$i-$b.json"; done
    "$SCROLL" bench -m "$MODEL" --threads 2 -p 512 -g 128 -r 1 --json > "$OUT/scroll-$i.json"
    if [[ -n $TEXT ]]; then
        for b in "${!BUILDS[@]}"; do llama_read "${BUILDS[$b]}" > "$OUT/read-$i-$b.txt"; done
        scroll_read > "$OUT/scroll-read-$i.txt"
    fi
done

python3 - "$OUT" "$ROUNDS" "${BUILDS[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
def load(path):
    try: return json.load(open(path))
    except Exception: return None
figures = {"pp512": [], "tg128": [], "read": []}   # per round: (best llama, its build, scroll)
for i in range(rounds):
    mine = {t["test"][:2]: t["tokensPerSecond"] for t in load(f"{out}/scroll-{i}.json")["results"]}
    for kind, name in (("pp", "pp512"), ("tg", "tg128")):
        best = (0, None)
        for b, path in enumerate(builds):
            for t in load(f"{out}/bench-{i}-{b}.json") or []:
                if ("pp" if t["n_gen"] == 0 else "tg") == kind and t["avg_ts"] > best[0]: best = (t["avg_ts"], path)
        if best[1]: figures[name].append((best[0], best[1], mine[kind]))
    if os.path.exists(f"{out}/scroll-read-{i}.txt"):
        best = (0, None)
        for b, path in enumerate(builds):
            text = open(f"{out}/read-{i}-{b}.txt").read().strip()
            if text and float(text) > best[0]: best = (float(text), path)
        mine_read = float(open(f"{out}/scroll-read-{i}.txt").read())
        if best[1]: figures["read"].append((best[0], best[1], mine_read))
for name, rows in figures.items():
    if not rows: continue
    label = "reading (llama-perplexity -c 2048)" if name == "read" else name
    l = med(r[0] for r in rows); s = med(r[2] for r in rows); ratio = med(r[2] / r[0] for r in rows)
    fastest = max(set(r[1] for r in rows), key=lambda p: sum(r[1] == p for r in rows))
    print(f"{label}: llama.cpp median {l:.1f} t/s (fastest build: {fastest}), scroll median {s:.1f} t/s, median ratio {ratio:.2f}x")
PY
