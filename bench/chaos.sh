#!/usr/bin/env bash
# Chaos at benchmark size: the test `services/kubemail/tests/chaos.rs` with 50,000 messages
# (CI runs it with 2,000). It prints what was sent, accepted, refused and delivered, and fails
# if an acknowledged message is missing or doubled.
#
#   bench/chaos.sh [messages]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export KUBEMAIL_CHAOS_MESSAGES=${1:-50000}
# Every service binary, not just the tests', since the test starts them as processes.
(cd "$root" && cargo build --locked --bins)
exec "$root/scripts/test" -p kubemail --test chaos -- --nocapture
