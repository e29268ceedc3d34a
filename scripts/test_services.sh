#!/usr/bin/env bash
# What `make test` needs beyond the Python environment: Debian's chromium (the labelling
# page's browser test, driven by Playwright; never a downloaded browser) and Debian's
# postgresql (the label database tests start their own throwaway server from it).
# Installs them when running as root (CI); otherwise says how, and those tests skip
# (or fail, when ROBOPREF_REQUIRE_BROWSER=1 / ROBOPREF_REQUIRE_PG=1 as in .ci/run).
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages for the tests: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "note: ${need[*]} missing: the browser/PostgreSQL tests will skip; run: sudo apt-get install ${need[*]}" >&2
fi
