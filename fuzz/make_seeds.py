#!/usr/bin/env python3
"""Writes seed Multiboot2 images (ELF32, ELF64, a.out kludge, relocatable) into fuzz/corpus/multiboot2."""
import os, struct
M = 0xE85250D6
def tag(t, flags, *body):
    b = struct.pack("<HHI", t, flags, 8 + 4 * len(body)) + b"".join(struct.pack("<I", x) for x in body)
    return b + b"\0" * (-len(b) % 8)
def header(*tags, arch=0):
    body = b"".join(tags) + tag(0, 0)
    ln = 16 + len(body)
    return struct.pack("<IIII", M, arch, ln, (-(M + arch + ln)) & 0xffffffff) + body
def elf(is64, paddr, code, memsz, mb2):
    f = bytearray(0x1000)
    f[:7] = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1])
    struct.pack_into("<HH", f, 16, 2, 62 if is64 else 3)
    if is64:
        struct.pack_into("<QQ", f, 24, paddr, 64); struct.pack_into("<HH", f, 54, 56, 1)
        struct.pack_into("<IIQQQQQ", f, 64, 1, 7, 0x1000, paddr, paddr, len(code), memsz)
    else:
        struct.pack_into("<II", f, 24, paddr, 52 + 12); struct.pack_into("<HH", f, 42, 32, 1)
        struct.pack_into("<IIIIII", f, 64, 1, 0x1000, paddr, paddr, len(code), memsz)
    f[0x800:0x800 + len(mb2)] = mb2
    return bytes(f) + code
def aout(addr, code, bss):
    h = header(tag(2, 0, addr, addr, addr + 0x100 + len(code), addr + 0x100 + len(code) + bss), tag(3, 0, addr + 0x100))
    return h + b"\x90" * (0x100 - len(h)) + code
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "multiboot2")
os.makedirs(out, exist_ok=True)
seeds = {
    "elf32": elf(False, 0x200000, b"\xf4" * 64, 0x1000, header(tag(1, 0, 1, 3, 6), tag(6, 0), tag(4, 0, 2))),
    "elf64": elf(True, 0x400000, b"\xf4" * 64, 0x3000, header(tag(5, 1, 1024, 768, 32), tag(7, 1))),
    "reloc": elf(False, 0x200000, b"\xf4" * 64, 0x1000, header(tag(10, 0, 0x100000, 0x700000, 0x1000, 2))),
    "aout": aout(0x200000, b"\xf4" * 64, 0x800),
}
for name, data in seeds.items():
    open(os.path.join(out, name), "wb").write(data)
