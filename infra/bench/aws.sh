#!/usr/bin/env bash
# The AWS path under load on the local emulators (DynamoDB Local + moto),
# reported against the emulators' own ceiling measured in the same run
# (shared/aws/benches/aws_path.rs). Starts and stops the emulators itself.
#
#   infra/bench/aws.sh                     # defaults: 2000 events, 300 hot orders
#   TALLY_BENCH_EVENTS=10000 infra/bench/aws.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
infra/emulators.sh install
trap 'infra/emulators.sh stop' EXIT
eval "$(infra/emulators.sh start)"
cargo bench -p tally-aws --bench aws_path
