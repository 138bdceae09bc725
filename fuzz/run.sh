#!/usr/bin/env bash
# Runs every cargo-fuzz target of vigia-domain for a bounded time each.
#
#   fuzz/run.sh                       # every target, 60 s each
#   FUZZ_SECONDS=300 fuzz/run.sh      # longer
#   fuzz/run.sh csv_row tag_parse     # only these targets
#
# Needs no nightly toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# sanitizer flags cargo-fuzz passes. Builds in its own target dir, never the
# workspace's. New corpus entries land in fuzz/corpus/<target>/ and crashes in
# fuzz/artifacts/<target>/; the script stops at the first target that fails.
# See docs/fuzzing.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/fuzz-target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

for target in "${targets[@]}"; do
    echo "== ${target}: ${seconds} s" >&2
    mkdir -p "corpus/${target}"
    cargo fuzz run "${target}" -- -max_total_time="${seconds}" -print_final_stats=1
done
