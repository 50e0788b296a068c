#!/usr/bin/env bash
# Fetch the jars of a real Kafka broker (KRaft) from Maven Central into a cache outside the repo.
#
# Usage: tools/install-kafka.sh            (version from tools/kafka/pom.xml)
#        KAFKA_VERSION=4.1.1 tools/install-kafka.sh
# The last line of stdout is the libs directory, for `java -cp '<libs>/*'`.
# A marker written only after a complete copy (holding the pom's checksum) makes a second run
# a no-op and makes an interrupted or outdated download start again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka/pom.xml"

default_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
version="${KAFKA_VERSION:-$default_version}"
cache_root="${RECO_CACHE:-$HOME/.cache/reco-engine}"
dest="$cache_root/kafka-$version"
libs="$dest/libs"
marker="$dest/.complete"
stamp="$(sha256sum "$pom" | cut -d' ' -f1) kafka=$version"

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-kafka: '$tool' not found; install a JDK >= 17 and Maven (Debian: openjdk-17-jdk-headless maven)" >&2
        exit 1
    fi
done

mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9

if [[ -f "$marker" && "$(cat "$marker")" == "$stamp" ]] && compgen -G "$libs/kafka_2.13-$version.jar" >/dev/null; then
    echo "$libs"
    exit 0
fi

echo "install-kafka: fetching Kafka $version jars into $libs" >&2
rm -f "$marker"
rm -rf "$libs"
mvn -B -q -f "$pom" \
    -Dkafka.version="$version" \
    -Dstyle.color=never \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime \
    -DoutputDirectory="$libs" >&2

if ! compgen -G "$libs/kafka_2.13-$version.jar" >/dev/null; then
    echo "install-kafka: kafka_2.13-$version.jar missing from $libs after the copy" >&2
    exit 1
fi
echo "$stamp" >"$marker"
echo "$libs"
