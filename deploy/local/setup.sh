#!/usr/bin/env bash
# Installs what building and testing Flightline needs and a brand-new machine may lack:
# a C toolchain and cmake (librdkafka is compiled from source by rdkafka-sys), a JDK and Maven
# (the local Kafka broker), Python with fastavro (the Avro interop test). Quick when all is there.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v curl >/dev/null || missing+=(curl)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi

# rustfmt and clippy: `make lint` (part of `make test`).
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    echo "setup: installing the $component component (rustup)"
    rustup component add "$component"
  fi
done

# fastavro: the Avro interop test; numpy + pandas: the independent metrics reference;
# pymavlink: the independent MAVLink decoder of tests/bridge.rs.
for module in fastavro numpy pandas pymavlink; do
  if ! python3 -c "import $module" 2>/dev/null; then
    echo "setup: installing $module (pip)"
    python3 -m pip install -q "$module" || python3 -m pip install -q --break-system-packages "$module"
  fi
done
