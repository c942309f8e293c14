#!/usr/bin/env sh
# Creates the demo secrets deploy/compose.yaml mounts: the credential encryption key (32 random bytes, base64),
# the node token and a first operator token. Existing files are kept. Files are world-readable so the
# containers' non-root user can read the bind mounts: fine for a laptop, not for production (see OPERATIONS.md).
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
gen() { [ -s "$dir/$1" ] || { printf '%s' "$2" > "$dir/$1"; chmod 0644 "$dir/$1"; echo "created $dir/$1"; }; }
gen encryption_key "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
gen node_token "synode-$(head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)"
gen operator_token "syop-$(head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)"
