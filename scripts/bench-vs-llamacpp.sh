#!/usr/bin/env bash
# Scroll against llama.cpp, same model, same machine, one run: llama-bench's pp512 and
# tg128 with 2 threads, then `scroll bench` on the same definitions, then the ratios.
#   scripts/bench-vs-llamacpp.sh /path/to/llama-bench [repetitions]
# llama.cpp is built outside this repo (see README, "Benchmarks"); none of it is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${1:?usage: $0 /path/to/llama-bench [repetitions]}
REPS=${2:-5}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
scripts/setup.sh
swift build -c release --product scroll >/dev/null

llama=$("$LLAMA_BENCH" -m "$MODEL" -t 2 -p 512 -n 128 -r "$REPS" -o json 2>/dev/null)
scroll=$(.build/release/scroll bench -m "$MODEL" --threads 2 -p 512 -g 128 -r "$REPS" --json)

python3 - "$llama" "$scroll" <<'PY'
import json, sys
llama, scroll = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def llama_rate(kind):
    for r in llama:
        if (kind == "pp" and r["n_prompt"] > 0 and r["n_gen"] == 0) or (kind == "tg" and r["n_gen"] > 0 and r["n_prompt"] == 0):
            return r["avg_ts"], r["stddev_ts"]
mine = {r["test"][:2]: (r["tokensPerSecond"], r["stddev"]) for r in scroll["results"]}
print(f"{'test':6} {'llama.cpp t/s':>16} {'scroll t/s':>16} {'ratio':>7}")
for kind, name in (("pp", "pp512"), ("tg", "tg128")):
    (l, ls), (s, ss) = llama_rate(kind), mine[kind]
    print(f"{name:6} {l:9.1f} ± {ls:4.1f} {s:9.1f} ± {ss:4.1f} {s / l:6.2f}x")
print(f"scroll peak RSS: {scroll['peakRSSMiB']:.0f} MiB")
PY
