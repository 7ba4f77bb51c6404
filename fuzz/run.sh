#!/bin/sh
# Bounded fuzz runs: the Multiboot2 loader (header + ELF/a.out + load + info structure), then the hypercall
# decoder and the guest page walk (a hostile ROS's registers and page tables), then virtio-blk (a hostile
# driver's rings and descriptor chains).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Usage: fuzz/run.sh [seconds each]
set -eu
cd "$(dirname "$0")"
python3 make_seeds.py
cargo +nightly fuzz run multiboot2 -- -max_total_time="${1:-60}"
mkdir -p corpus/hypercall
cargo +nightly fuzz run hypercall -- -max_total_time="${1:-60}"
mkdir -p corpus/virtio_blk
exec cargo +nightly fuzz run virtio_blk -- -max_total_time="${1:-60}"
