#!/bin/sh
# Bounded fuzz run of the Multiboot2 loader (header + ELF/a.out + load + info structure).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Usage: fuzz/run.sh [seconds]
set -eu
cd "$(dirname "$0")"
python3 make_seeds.py
exec cargo +nightly fuzz run multiboot2 -- -max_total_time="${1:-60}"
