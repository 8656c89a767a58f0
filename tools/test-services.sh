#!/bin/sh
# System packages the test suite needs: the tests start redis-server, headless Chromium and
# tinyproxy (a forward proxy) themselves, on loopback ports, and stop them afterwards. Installed
# with the system package manager when missing and possible (root with apt-get, as on CI);
# otherwise those tests say why they cannot run.
set -e
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v tinyproxy >/dev/null 2>&1 || missing="$missing tinyproxy"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test services:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "note:$missing not installed (needs root and apt-get); the tests that use them will say so" >&2
fi
