#!/usr/bin/env bash
# Builds duet's lean test kernel from Debian's linux-source package, once per machine.
# Usage: build-test-kernel.sh OUT_DIR   (OUT_DIR receives vmlinux, bzImage, config and
# modules/<release>/: the modules of modules.order under kernel/, stripped, plus modules.builtin)
# Called by `cargo xtask images` with OUT_DIR = ${XDG_CACHE_HOME:-~/.cache}/duet/kernel-test; xtask
# keys that cache on a hash of this script and duet-test.config (OUT_DIR/key). The source package
# is downloaded once into OUT_DIR/work and kept, so a config change rebuilds incrementally.
# Environment: DUET_APT_STAMP=FILE — skip `apt-get update` if FILE exists, create it after one
# (xtask uses it to run apt-get update at most once per run).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
frag=$here/duet-test.config
src=linux-source-6.1
work=$out/work
mkdir -p "$work"

apt_update() {
  if [ -n "${DUET_APT_STAMP:-}" ] && [ -e "$DUET_APT_STAMP" ]; then return; fi
  echo "apt-get update"
  apt-get update -q >/dev/null
  if [ -n "${DUET_APT_STAMP:-}" ]; then touch "$DUET_APT_STAMP"; fi
}

# Build dependencies.
need=()
for p in flex bison bc make gcc patch xz:xz-utils perl:perl; do
  cmd=${p%%:*}; pkg=${p#*:}
  command -v "$cmd" >/dev/null || need+=("$pkg")
done
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt_update
  echo "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# Kernel source, once.
cd "$work"
if [ ! -d $src ]; then
  if ! ls ${src}_*.deb >/dev/null 2>&1; then
    apt_update
    echo "apt-get download $src"
    apt-get download -q $src
  fi
  rm -rf pkg && dpkg-deb -x ${src}_*.deb pkg
  tar -xaf pkg/usr/src/$src.tar.xz
  rm -rf pkg
fi

cd $src
# duet's one source patch: user-space syscalls on PVM hosts (docs/platform.md). Applied once; the
# source tree is kept between builds.
if ! grep -q duet_pvm_syscall arch/x86/mm/fault.c; then
  patch -p1 -s < "$here/pvm-syscall-shim.patch"
fi

# Configure: tinyconfig + our fragment, then check that every option of the fragment took.
make -s tinyconfig
scripts/kconfig/merge_config.sh -m -O . .config "$frag" >/dev/null
make -s olddefconfig
bad=0
while IFS='=' read -r key want; do
  case $key in CONFIG_*) ;; *) continue ;; esac
  got=$(sed -n "s/^$key=//p" .config)
  if [ "$want" = n ]; then
    [ -z "$got" ] || { echo "config: $key=$got, wanted n" >&2; bad=1; }
  elif [ "$got" != "$want" ]; then
    echo "config: $key=${got:-<unset>}, wanted $want (a dependency is missing?)" >&2; bad=1
  fi
done < "$frag"
[ $bad -eq 0 ] || { echo "duet-test.config did not apply; fix the fragment" >&2; exit 1; }

make -s -j"$(nproc)" bzImage modules
# The modules, laid out as under /lib/modules/<release> (no depmod needed: xtask reads each module's
# .modinfo for its dependencies, as it does for Debian's kernel).
rel=$(make -s kernelrelease)
rm -rf "$out/modules.tmp" && mkdir -p "$out/modules.tmp/$rel/kernel"
while read -r obj; do
  [ -n "$obj" ] || continue
  ko=${obj%.*}.ko
  install -D -m 644 "$ko" "$out/modules.tmp/$rel/kernel/$ko"
  strip --strip-debug "$out/modules.tmp/$rel/kernel/$ko"
done < modules.order
cp modules.order modules.builtin "$out/modules.tmp/$rel/"
rm -rf "$out/modules" && mv "$out/modules.tmp" "$out/modules"
cp vmlinux "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"
cp .config "$out/config"
echo "test kernel ready: $out/vmlinux"
