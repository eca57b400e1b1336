#!/usr/bin/env bash
# Installs what the build and tests need, only when something is missing, so
# every make target can call it cheaply. Debian packages through apt, and a
# Go toolchain for the test bed (below). With --build, only what building
# the programs needs (make, make install): no test tools, no Go.
set -euo pipefail
build_only=false
[ "${1:-}" = --build ] && build_only=true

# The fuzzers need the compiler-rt of the clang apt installs: clang-14 on
# Debian 12, another on later releases (`apt-cache depends clang` names it).
# Without package lists (a fresh container) apt-cache knows nothing: the
# name is a guess until apt-get update, and then asked again. Never fatal:
# under set -e a failed lookup would end the script before the update.
clang_rt() {
  local v
  v="$(apt-cache depends clang 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^clang-[0-9]+$/ { sub("clang-", "", $2); print $2; exit }' ||
    true)"
  echo "libclang-rt-${v:-14}-dev"
}
rt="$(clang_rt)"
# prometheus only for promtool, which checks the metrics text in the tests.
pkgs=(build-essential pkg-config libcurl4-openssl-dev libuv1-dev libjson-c-dev
      libyaml-dev libssl-dev)
$build_only || pkgs+=(libcmocka-dev clang clang-format valgrind "$rt" prometheus
                      jq git curl ca-certificates)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
# unzip unpacks the Go toolchain when one is fetched.
$build_only || command -v unzip >/dev/null 2>&1 || missing+=(unzip)

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  now="$(clang_rt)"
  if ! $build_only && [ "$now" != "$rt" ]; then
    for i in "${!missing[@]}"; do
      [ "${missing[$i]}" = "$rt" ] && unset 'missing[i]'
    done
    dpkg-query -W -f='${Status}' "$now" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$now")
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # The package starts a Prometheus server and enables it at boot; only its
  # promtool is wanted, so a server installed here is stopped and disabled.
  case " ${missing[*]} " in
    *" prometheus "*)
      if [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
      fi ;;
  esac
fi

$build_only && exit 0

# Go. The test bed's module (e2e/go.mod) names the Go it needs; Go 1.21 and
# later fetch that version by themselves (GOTOOLCHAIN). Debian 12's
# golang-go is 1.19 and cannot, so without a Go that can, the toolchain is
# fetched the way `go` itself does: module golang.org/toolchain from the Go
# module proxy, unpacked into GPUMODE_GO_ROOT (/usr/local/go, where the
# scripts look first).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
goroot="${GPUMODE_GO_ROOT:-/usr/local/go}"
go_can_switch() { # go_can_switch GO: 0 when GO is 1.21 or later
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  [ "${v%%.*}" -gt 1 ] || { v="${v#*.}"; [ "${v%%.*}" -ge 21 ]; }
}
for g in "$goroot/bin/go" "$(command -v go || true)"; do
  if [ -n "$g" ] && [ -x "$g" ] && go_can_switch "$g"; then
    exit 0
  fi
done
if [ -e "$goroot" ]; then
  echo "deps: $goroot holds a Go older than 1.21; install Go 1.21 or later there or on PATH (e2e/go.mod names the version the test bed uses)" >&2
  exit 1
fi
want="$(awk '$1 == "go" { print $2; exit }' "$here/../e2e/go.mod")"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "deps: no Go toolchain for $(uname -m)" >&2; exit 1 ;;
esac
proxy="${GOPROXY:-https://proxy.golang.org}"
proxy="${proxy%%[,|]*}"
case "$proxy" in http://* | https://*) ;; *) proxy=https://proxy.golang.org ;; esac
url="$proxy/golang.org/toolchain/@v/v0.0.1-go$want.linux-$arch.zip"
echo "deps: fetching Go $want from $url into $goroot"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
unzip -q "$tmp/go.zip" -d "$tmp"
sudo=""
[ "$(id -u)" -eq 0 ] || [ -w "$(dirname "$goroot")" ] || sudo=sudo
$sudo mkdir -p "$goroot"
$sudo cp -a "$tmp/golang.org/toolchain@v0.0.1-go$want.linux-$arch/." "$goroot/"
$sudo chmod +x "$goroot/bin/"* "$goroot/pkg/tool/"*/* 2>/dev/null || true
"$goroot/bin/go" version
