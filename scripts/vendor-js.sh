#!/bin/sh
# Copy the vendored browser libraries from node_modules (versions pinned in package.json and
# package-lock.json) into src/isthmus/viewer/vendor/, each with its version and licence on top.
# The browser code has no build step: these files are served as they are.
set -eu
cd "$(dirname "$0")/.."
test -d node_modules/client-zip || npm ci --no-audit --no-fund
out=src/isthmus/viewer/vendor
mkdir -p "$out"
vendor() { # package, file in the package, target name
  version=$(node -p "require('./node_modules/$1/package.json').version")
  {
    echo "/*! $1 $version ($(node -p "require('./node_modules/$1/package.json').license") licence), vendored from npm by scripts/vendor-js.sh; do not edit."
    sed 's/^/ * /; s/ *$//' "node_modules/$1/$4"
    echo " */"
    cat "node_modules/$1/$2"
    echo
  } > "$out/$3"
  echo "$out/$3: $1 $version"
}
vendor client-zip index.js client-zip.js LICENSE.txt
