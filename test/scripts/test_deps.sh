#!/usr/bin/env bash
# scripts/deps.sh on a machine whose apt knows no packages yet (a fresh
# container: empty package lists, so `apt-cache depends` fails) must go on
# to its install step rather than stop there. Run after deps installed
# everything, so nothing is installed here: the script must end with 0.
set -u
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fake="$(mktemp -d)"
trap 'rm -rf "$fake"' EXIT
printf '#!/bin/sh\necho "E: No packages found" >&2\nexit 100\n' >"$fake/apt-cache"
chmod +x "$fake/apt-cache"
if out="$(PATH="$fake:$PATH" bash "$top/scripts/deps.sh" 2>&1)"; then
  echo "deps with an apt that knows nothing: ok"
else
  echo "FAIL: scripts/deps.sh stopped (exit $?) when apt-cache knew no packages:" >&2
  echo "$out" >&2
  exit 1
fi

# --build (make, make install) needs no Go: an old Go where the test bed's
# would go does not stop it, while the full run refuses it.
old="$fake/go-old"
mkdir -p "$old/bin"
printf '#!/bin/sh\necho go1.20\n' >"$old/bin/go"
chmod +x "$old/bin/go"
if ! out="$(PATH="$fake:/usr/bin:/bin" GPUMODE_GO_ROOT="$old" bash "$top/scripts/deps.sh" --build 2>&1)"; then
  echo "FAIL: scripts/deps.sh --build stopped on an old Go:" >&2
  echo "$out" >&2
  exit 1
fi
if PATH="$fake:/usr/bin:/bin" GPUMODE_GO_ROOT="$old" bash "$top/scripts/deps.sh" >/dev/null 2>&1; then
  echo "FAIL: scripts/deps.sh took a Go older than 1.21" >&2
  exit 1
fi
echo "deps --build without the test bed's Go: ok"
