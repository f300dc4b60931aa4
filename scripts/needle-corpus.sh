#!/usr/bin/env bash
# Builds the natural-text haystacks `scroll needle` reads, from documentation and prose that
# Debian ships, into DIR (default: $TMPDIR/scroll-needle; outside the repository, several MB):
#   python-docs.txt        the Python tutorial, HOWTOs, FAQ and language reference (python3.11-doc)
#   debian-reference.txt   the Debian Reference manual (debian-reference-en)
#   fortunes.txt           quotations, literature, poems and jokes (fortunes)
#   licenses.txt           the licence texts every Debian system has (/usr/share/common-licenses)
# Each is plain text: markup that only a renderer reads is stripped, prose and code kept.
# Usage: scripts/needle-corpus.sh [DIR]
set -euo pipefail
out=${1:-${TMPDIR:-/tmp}/scroll-needle}
mkdir -p "$out"

packages=(python3.11-doc debian-reference-en fortunes)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# reStructuredText: drop directives, labels and option lines; keep a role's text (:func:`sorted` → sorted).
src=/usr/share/doc/python3.11/html/_sources
for d in tutorial howto faq reference; do
  find "$src/$d" -name '*.rst.txt' | sort
done | xargs cat | sed -E \
  -e '/^\.\. /d' -e '/^   :[a-z-]+:/d' -e '/^[=*~^"#-]{4,}$/d' \
  -e 's/:[a-z]+(:[a-z]+)?:`~?([^`<]*[^ `<])( <[^>]*>)?`/\2/g' -e 's/``([^`]*)``/\1/g' \
  | cat -s > "$out/python-docs.txt"

zcat /usr/share/debian-reference/debian-reference.en.txt.gz | cat -s > "$out/debian-reference.txt"

# fortune files separate their entries with a line holding only %.
f=/usr/share/games/fortunes
for n in literature wisdom people humorists songs-poems science pratchett education work love; do
  [ -f "$f/$n" ] && cat "$f/$n"
done | sed -e 's/^%$//' | cat -s > "$out/fortunes.txt"

for n in GPL-3 LGPL-3 Apache-2.0 MPL-2.0 GFDL-1.3 Artistic CC0-1.0 BSD; do
  [ -f "/usr/share/common-licenses/$n" ] && cat "/usr/share/common-licenses/$n" && echo
done | cat -s > "$out/licenses.txt"

wc -c "$out"/*.txt
