#!/usr/bin/env bash
# Build the Kafka Streams peer into target/kstreams-offers-peer.jar (idempotent:
# skips Maven when the jar is newer than the pom and every source file).
set -euo pipefail
cd "$(dirname "$0")"
JAR=target/kstreams-offers-peer.jar
if [[ -f "$JAR" && -z "$(find pom.xml src -newer "$JAR" -print -quit)" ]]; then
  echo "$JAR"
  exit 0
fi
command -v mvn >/dev/null || { echo "build.sh: Maven (mvn) is not on PATH" >&2; exit 1; }
command -v java >/dev/null || { echo "build.sh: Java 17+ (java) is not on PATH" >&2; exit 1; }
mvn -q -B package >&2
echo "$JAR"
