#!/usr/bin/env bash
# Builds duet's lean test kernel from Debian's linux-source package, once per machine.
# Usage: build-test-kernel.sh OUT_DIR   (OUT_DIR receives vmlinux and bzImage)
# Called by `cargo xtask images`; the cache key is the config fragment's hash plus the source version.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
frag=$here/duet-test.config
work=$out/work
mkdir -p "$work"
need=()
for p in flex bison bc; do command -v $p >/dev/null || need+=($p); done
for h in /usr/include/libelf.h /usr/include/openssl/ssl.h; do [ -e $h ] || need+=(libelf-dev libssl-dev); done
if [ ${#need[@]} -gt 0 ] || ! ls "$work"/linux-source-6.1_*.deb >/dev/null 2>&1 && [ ! -d "$work/linux-source-6.1" ]; then
  apt-get update -q >/dev/null
fi
[ ${#need[@]} -gt 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
cd "$work"
if [ ! -d linux-source-6.1 ]; then
  ls linux-source-6.1_*.deb >/dev/null 2>&1 || apt-get download linux-source-6.1 2>&1 | grep -v '^W:' || true
  rm -rf pkg && dpkg-deb -x linux-source-6.1_*.deb pkg
  tar -xaf pkg/usr/src/linux-source-6.1.tar.xz
  rm -rf pkg
fi
cd linux-source-6.1
make -s tinyconfig
scripts/kconfig/merge_config.sh -m -O . .config "$frag" >/dev/null
make -s olddefconfig
make -s -j"$(nproc)" bzImage
cp vmlinux "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage"
cp .config "$out/config"
echo "test kernel ready: $out/vmlinux"
