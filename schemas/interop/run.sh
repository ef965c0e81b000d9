#!/usr/bin/env bash
# Round trip of Flightline's Avro messages through fastavro (Python), a non-Rust Avro
# implementation: Rust writes → fastavro reads and checks; fastavro writes → Rust reads and checks.
# Exits non-zero with a message on any mismatch. Called by `make test`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if ! "$python" -c 'import fastavro' 2>/dev/null; then
    echo "interop: installing fastavro" >&2
    "$python" -m pip install --quiet --disable-pip-version-check fastavro 2>/dev/null \
        || "$python" -m pip install --quiet --disable-pip-version-check --user fastavro 2>/dev/null \
        || "$python" -m pip install --quiet --disable-pip-version-check --break-system-packages fastavro \
        || { echo "interop: cannot install fastavro with $python -m pip" >&2; exit 1; }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$root"
cargo build --quiet -p schemas --example interop
example="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/interop"

fail() { echo "interop: FAILED ($1)" >&2; exit 1; }
"$example" write "$work" || fail "rust could not write its messages"
"$python" "$here/interop.py" check "$work" || fail "fastavro does not read what rust wrote"
"$python" "$here/interop.py" write "$work" || fail "fastavro could not write its messages"
"$example" read "$work" || fail "rust does not read what fastavro wrote"
echo "interop: ok (rust <-> fastavro $("$python" -c 'import fastavro; print(fastavro.__version__)'))"
