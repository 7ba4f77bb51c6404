#!/bin/sh
# Fails if the built HRT kernel contains any SSE/AVX/MMX instruction (an XMM, YMM, ZMM or MMX
# register operand) or one of the instructions that PVM cannot emulate in guest ring 0
# (../../../shared/PLATFORM.md): int3, xsave family, xgetbv, cmpxchg16b, popcnt, crc32, rdtscp,
# stac/clac, andn, movbe, rdpid, and x87 control ops other than fninit/fnstcw.
#
# usage: check-no-simd.sh [KERNEL]   (default: the release build, then target/guest-images/hrt.elf)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kernel=${1:-}
if [ -z "$kernel" ]; then
    for k in "$here/target/x86_64-unknown-linux-gnu/release/hrt" "$here/../../target/guest-images/hrt.elf"; do
        if [ -f "$k" ]; then kernel=$k; break; fi
    done
fi
if [ -z "$kernel" ] || [ ! -f "$kernel" ]; then
    echo "check-no-simd: no kernel found (build guests/hrt first, or pass its path)" >&2
    exit 2
fi
command -v objdump >/dev/null || { echo "check-no-simd: objdump not found (binutils)" >&2; exit 2; }

dis=$(objdump -d --no-show-raw-insn "$kernel")
count=$(printf '%s\n' "$dis" | grep -c '^ *[0-9a-f]*:' || true)
if [ "$count" -lt 100 ]; then
    echo "check-no-simd: $kernel: only $count instructions disassembled; is it the kernel?" >&2
    exit 2
fi
simd=$(printf '%s\n' "$dis" | grep -E '%[xyz]mm[0-9]|%mm[0-7]|%k[0-7]\b' || true)
bad=$(printf '%s\n' "$dis" | grep -E '^ *[0-9a-f]+:[[:space:]]+(int3|xsave[a-z0-9]*|xrstor[a-z0-9]*|xgetbv|cmpxchg16b|lock cmpxchg16b|popcnt|crc32[a-z]*|rdtscp|stac|clac|andn|movbe|rdpid|fwait|fnclex|fldcw|fnstsw|ldmxcsr|stmxcsr|emms|fnsave|fld1)\b' || true)
status=0
if [ -n "$simd" ]; then
    echo "check-no-simd: $kernel uses SIMD registers:" >&2
    printf '%s\n' "$simd" | head -20 >&2
    status=1
fi
if [ -n "$bad" ]; then
    echo "check-no-simd: $kernel uses instructions guest ring 0 cannot run on PVM:" >&2
    printf '%s\n' "$bad" | head -20 >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "check-no-simd: $kernel: $count instructions, no SIMD, no PVM-unemulatable instruction"
fi
exit $status
