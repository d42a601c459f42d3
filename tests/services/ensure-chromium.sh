#!/usr/bin/env bash
# The browser test (tests/services/test_ui_browser.py) drives Debian's chromium at /usr/bin/chromium
# with Playwright for Python, which downloads no browser of its own. `make test-browser` (which CI,
# .ci/run, calls) runs this first: it installs the package when it is missing (as root, or through
# sudo without a password), else says how to.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  apt_get=(sudo -n apt-get)
else
  echo "the browser test needs Debian's chromium at /usr/bin/chromium: sudo apt-get install chromium" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser test ..."
"${apt_get[@]}" update -q >/dev/null
DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ] || { echo "apt-get installed chromium, but /usr/bin/chromium is missing" >&2; exit 1; }
