#!/usr/bin/env bash
# A chat that refers back to its first message after thousands of tokens: the first turn
# tells a made-up fact, then turns quoting paragraphs of TEXT (each with a short reply) until
# about TOKENS tokens are held, then a question about the fact — each turn a separate
# `scroll --session` run, as a user continuing a saved chat would. The question is asked
# twice from the same saved state: as is, and with --no-reread.
# Usage: scripts/chat-recall.sh TEXT [TOKENS]   (TEXT: e.g. scripts/needle-corpus.sh's fortunes.txt)
set -euo pipefail
text=$1; tokens=${2:-5000}
cd "$(dirname "$0")/.."
scroll=$PWD/.build/release/scroll
[ -x "$scroll" ] || swift build -c release >/dev/null
export SCROLL_SESSIONS; SCROLL_SESSIONS=$(mktemp -d)
trap 'rm -rf "$SCROLL_SESSIONS"' EXIT
say() { "$scroll" --session "$1" --temp 0 -n 40 "${@:2}" < /dev/null 2>/dev/null; }

say chat "Hello! A note for later: my sister Odette lives in Quimper, where she keeps bees." >/dev/null
python3 - "$text" > "$SCROLL_SESSIONS.turns" <<'PY'
import sys
paragraphs = [p.strip().replace("\n", " ") for p in open(sys.argv[1], encoding="utf-8", errors="replace").read().split("\n\n")]
print("\n".join(p for p in paragraphs[len(paragraphs) // 3:] if 300 <= len(p) <= 1200))
PY
held=0
while IFS= read -r paragraph && [ "$held" -lt "$tokens" ]; do
  say chat "Here is a passage I read today: $paragraph What do you make of it?" >/dev/null
  held=$("$scroll" sessions ls 2>/dev/null | awk '$1 == "chat" { print $2 }')
done < "$SCROLL_SESSIONS.turns"
rm -f "$SCROLL_SESSIONS.turns"
cp "$SCROLL_SESSIONS/chat" "$SCROLL_SESSIONS/same"
echo "held: $held tokens"
echo "answer: $(say chat "Where does my sister live?")"
echo "answer with --no-reread: $(say same --no-reread "Where does my sister live?")"
