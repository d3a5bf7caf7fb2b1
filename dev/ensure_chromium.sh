#!/usr/bin/env bash
# Installs Debian's chromium for the browser test of the HTML report (e2e/report_browser_test.ts).
# Idempotent and quiet: does nothing when /usr/bin/chromium exists; refreshes the package lists
# only when apt does not know the package yet. Needs root (or sudo).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1; then
  $sudo apt-get update -qq >/dev/null
fi
echo "ensure_chromium: installing chromium with apt-get"
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x /usr/bin/chromium
