#!/usr/bin/env bash
# Installs the JavaScript libraries scripts get as globals (CryptoJS, _, moment) from the npm
# registry, exactly as runner-image/runner/apitest/jslibs/package-lock.json pins them
# (versions and integrity hashes, `npm ci`), into a cache outside the repository, and copies
# the one file per library that jslibs/package.json's assayGlobals names into jslibs/vendor/
# (not committed), where the script engine loads them. Each library's licence must be MIT;
# its LICENSE file is copied beside it. A vendor/ made from the same lock makes this a no-op,
# so `make deps` and the runner image build call it freely.
#
#   bash hack/vendor-js.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JSLIBS="$ROOT/runner-image/runner/apitest/jslibs"
VENDOR="$JSLIBS/vendor"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
ALLOWED_LICENSES="MIT"

pin=$(cat "$JSLIBS/package.json" "$JSLIBS/package-lock.json" | sha256sum | cut -c1-16)
if [ "$(cat "$VENDOR/.pin" 2>/dev/null)" = "$pin" ]; then exit 0; fi

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "vendor-js: $tool is required (https://nodejs.org) and was not found" >&2; exit 1; }
done

modules="$CACHE/jslibs-$pin"
if [ ! -f "$modules/.complete" ]; then
  echo "vendor-js: npm ci in $modules" >&2
  rm -rf "$modules"
  mkdir -p "$modules"
  cp "$JSLIBS/package.json" "$JSLIBS/package-lock.json" "$modules/"
  # No install scripts: only files are taken from these packages.
  (cd "$modules" && npm ci --ignore-scripts --no-audit --no-fund --cache "$CACHE/npm" >&2)
  touch "$modules/.complete"
fi

# Into a scratch folder first, so an interrupted copy never leaves a vendor/ the check above trusts.
scratch=$(mktemp -d "$JSLIBS/.vendor.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
ALLOWED_LICENSES="$ALLOWED_LICENSES" node - "$JSLIBS/package.json" "$modules/node_modules" "$scratch" <<'EOF'
const fs = require("fs"), path = require("path");
const [manifestFile, modules, out] = process.argv.slice(2);
const manifest = JSON.parse(fs.readFileSync(manifestFile, "utf8"));
const allowed = process.env.ALLOWED_LICENSES.split(" ");
for (const [name, file] of Object.entries(manifest.assayGlobals)) {
  const pkg = file.split("/")[0];
  const meta = JSON.parse(fs.readFileSync(path.join(modules, pkg, "package.json"), "utf8"));
  if (meta.version !== manifest.dependencies[pkg]) throw new Error(`${pkg}: installed ${meta.version}, pinned ${manifest.dependencies[pkg]}`);
  if (!allowed.includes(meta.license)) throw new Error(`${pkg} ${meta.version}: licence ${meta.license} is not one of ${allowed}`);
  fs.copyFileSync(path.join(modules, file), path.join(out, path.basename(file)));
  fs.copyFileSync(path.join(modules, pkg, "LICENSE"), path.join(out, `${pkg}.LICENSE`));
  console.error(`vendor-js: ${name} = ${pkg} ${meta.version} (${meta.license})`);
}
EOF
echo "$pin" >"$scratch/.pin"
rm -rf "$VENDOR"
mv "$scratch" "$VENDOR"
chmod 755 "$VENDOR"
