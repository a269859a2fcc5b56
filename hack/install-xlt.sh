#!/usr/bin/env bash
# Fetches Xceptance XLT (com.xceptance:xlt) and its runtime dependencies from Maven Central
# into a cache outside the repository and prints the directory: lib/ holds the jars, so
# `java -cp "$dir/lib/*" com.xceptance.xlt.report.ReportGeneratorMain ...` runs XLT's own
# report generator on a load test's XLT result layout (README.md, "The result archive").
# A warm cache makes this a no-op, so `make test` can call it freely.
#
#   bash hack/install-xlt.sh           # prints ~/.cache/assay/xlt-<version>
set -euo pipefail

XLT_VERSION="${XLT_VERSION:-8.1.0}"
CACHE="${ASSAY_CACHE:-$HOME/.cache/assay}"
DIR="$CACHE/xlt-$XLT_VERSION"
if [ -f "$DIR/.complete" ]; then echo "$DIR"; exit 0; fi

command -v mvn >/dev/null || { echo "install-xlt: Maven is required and was not found" >&2; exit 1; }
command -v java >/dev/null || { echo "install-xlt: a Java runtime (17+) is required and was not found" >&2; exit 1; }
mkdir -p "$CACHE"
start=$(date +%s)
echo "install-xlt: fetching XLT $XLT_VERSION from Maven Central" >&2
# Resolve into a scratch directory and move it in last, so an interrupted download never
# leaves a half-filled lib/ that the warm-cache check above would trust.
scratch=$(mktemp -d "$CACHE/.xlt-fetch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cat >"$scratch/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.assay</groupId>
  <artifactId>xlt-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>com.xceptance</groupId>
      <artifactId>xlt</artifactId>
      <version>$XLT_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
# A scratch Maven repository, removed with the rest: the user's ~/.m2 stays untouched and
# the cache holds the jars once.
mvn -q -B -Dstyle.color=never -f "$scratch/pom.xml" -Dmaven.repo.local="$scratch/m2" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$scratch/out/lib" >&2
rm -rf "$DIR"
mv "$scratch/out" "$DIR"
touch "$DIR/.complete"
echo "install-xlt: fetched XLT $XLT_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$DIR"
