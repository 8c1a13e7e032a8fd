#!/usr/bin/env bash
# Installs Debian's headless browser for the browser test (tests/e2e/tests/browser.rs):
# chromium and its WebDriver, chromium-driver, plus a font with Cyrillic for readable
# screenshots. Returns at once when both are already on PATH. Needs root or password-less sudo
# (CI runs as root); otherwise it says what to install.
set -euo pipefail

say() { echo "browser-deps: $*"; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi

packages=(chromium chromium-driver fonts-dejavu-core)
if [[ $(id -u) == 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    say "chromium or chromedriver missing and no root: run 'sudo apt-get install ${packages[*]}'" >&2
    exit 1
fi
command -v apt-get >/dev/null || { say "no apt-get: install ${packages[*]} with your package manager" >&2; exit 1; }

say "apt-get install ${packages[*]} (a minute or two the first time)"
started=$SECONDS
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
say "installed in $((SECONDS - started)) s: $(command -v chromium), $(command -v chromedriver)"
