#!/usr/bin/env bash
# Runs every test: builds the real servers (nats-server, etcd, kube-apiserver,
# bigquery-emulator) from the Go module proxy if their cached build is stale,
# builds the workspace's binaries (the end-to-end tests run them as processes),
# then `cargo test` over the whole workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
testenv/build.sh
cargo build --workspace --bins --locked
# --no-fail-fast: one failing test target must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast "$@"
