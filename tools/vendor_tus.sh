#!/bin/sh
# Fetch tus-js-client again from npm, exactly the version the page ships, into src/apercu/api/static/vendor/.
# The vendored files are committed (the running service never needs npm); this script is how they were made, so
# that anyone can check them (`git diff` after running it shows nothing) or move to another version (change
# VERSION and INTEGRITY below, run it, change the <script> in templates/index.html, and read the release notes).
# The browser bundle is dist/tus.min.js (UMD: it sets `window.tus`), without its last line (a sourceMappingURL to a
# map the package does not serve).
set -eu

VERSION=4.3.1
INTEGRITY=sha512-ZLeYmjrkaU1fUsKbIi8JML52uAocjEZtBx4DKjRrqzrZa0O4MYwT6db+oqePlspV+FxXJAyFBc/L5gwUi2OFsg==

here=$(cd "$(dirname "$0")/.." && pwd)
vendor="$here/src/apercu/api/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "tus-js-client@$VERSION" >/dev/null
tarball="tus-js-client-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
    echo "tus-js-client $VERSION: the tarball's integrity is $actual, expected $INTEGRITY" >&2
    exit 1
fi
tar xzf "$tarball"
sed '/^\/\/# sourceMappingURL=/d' package/dist/tus.min.js >"$vendor/tus-js-client-$VERSION.min.js"
cp package/LICENSE "$vendor/tus-js-client-$VERSION.LICENSE"
cat >"$vendor/VERSION" <<NOTE
tus-js-client $VERSION (MIT, see tus-js-client-$VERSION.LICENSE)
from npm: https://registry.npmjs.org/tus-js-client/-/tus-js-client-$VERSION.tgz
integrity $INTEGRITY
file dist/tus.min.js, without its sourceMappingURL line; fetched again by tools/vendor_tus.sh
NOTE
wc -c "$vendor/tus-js-client-$VERSION.min.js"
