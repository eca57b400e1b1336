#!/usr/bin/env bash
# Installs what the build and tests need, only when something is missing, so
# every make target can call it cheaply. Debian packages through apt; Go from
# Debian if absent (the e2e module then fetches its own toolchain version via
# the Go module proxy through GOTOOLCHAIN).
set -euo pipefail

pkgs=(build-essential pkg-config libcurl4-openssl-dev libuv1-dev libjson-c-dev
      libyaml-dev libssl-dev libcmocka-dev clang clang-format valgrind
      libclang-rt-14-dev prometheus jq git curl ca-certificates)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  missing+=(golang-go)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
