#!/usr/bin/env bash
# Scroll against llama.cpp, same model, same machine, one run: llama-bench's pp512 and
# tg128 with 2 threads, then `scroll bench` on the same definitions, then the ratios.
#   scripts/bench-vs-llamacpp.sh /path/to/llama-bench [rounds]
# The two alternate, one repetition each per round, so a noisy neighbour on a shared host
# (this machine's speed moves by ±30% from minute to minute) hits both alike; the ratio
# reported is the median of the per-round ratios, beside each tool's median speed.
# llama.cpp is built outside this repo (see README, "Benchmarks"); none of it is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${1:?usage: $0 /path/to/llama-bench [rounds]}
ROUNDS=${2:-7}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
scripts/setup.sh
swift build -c release --product scroll >/dev/null

rounds=()
for ((i = 0; i < ROUNDS; i++)); do
    llama=$("$LLAMA_BENCH" -m "$MODEL" -t 2 -p 512 -n 128 -r 1 -o json 2>/dev/null)
    scroll=$(.build/release/scroll bench -m "$MODEL" --threads 2 -p 512 -g 128 -r 1 --json)
    rounds+=("{\"llama\": $llama, \"scroll\": $scroll}")
done

python3 - "${rounds[@]}" <<'PY'
import json, statistics, sys
rows = []
for arg in sys.argv[1:]:
    r = json.loads(arg)
    llama = {}
    for t in r["llama"]:
        kind = "pp" if t["n_gen"] == 0 else "tg"
        llama[kind] = t["avg_ts"]
    mine = {t["test"][:2]: t["tokensPerSecond"] for t in r["scroll"]["results"]}
    rows.append((llama, mine, r["scroll"]["peakRSSMiB"]))
print(f"{'round':>5} {'llama pp512':>12} {'scroll pp512':>13} {'ratio':>6} {'llama tg128':>12} {'scroll tg128':>13} {'ratio':>6}")
for i, (l, s, _) in enumerate(rows):
    print(f"{i + 1:5} {l['pp']:12.1f} {s['pp']:13.1f} {s['pp'] / l['pp']:5.2f}x {l['tg']:12.1f} {s['tg']:13.1f} {s['tg'] / l['tg']:5.2f}x")
med = statistics.median
for kind, name in (("pp", "pp512"), ("tg", "tg128")):
    l = med(r[0][kind] for r in rows); s = med(r[1][kind] for r in rows)
    ratio = med(r[1][kind] / r[0][kind] for r in rows)
    print(f"{name}: llama.cpp median {l:.1f} t/s, scroll median {s:.1f} t/s, median ratio {ratio:.2f}x")
print(f"scroll peak RSS: {max(r[2] for r in rows):.0f} MiB")
PY
