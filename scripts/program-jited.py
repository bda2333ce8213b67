#!/usr/bin/env python3
"""The check program's JIT'd image with cpu-clock samples per instruction (BENCHMARKS.md).

Debian's bpftool has no disassembler (no libbfd): the image and its address are read with
BPF_PROG_GET_FD_BY_ID and BPF_OBJ_GET_INFO_BY_FD, disassembled with objdump, and each
instruction is printed with the samples whose address it holds.
  program-jited.py PROG_ID IPS_FILE   (IPS_FILE: one sampled address per line, hex)
"""
import collections, ctypes, os, re, struct, subprocess, sys, tempfile

SYS_BPF = 321  # x86_64
PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 13, 15
libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        sys.exit(f"program-jited: bpf({cmd}): {os.strerror(err)}")
    return fd


def image(prog_id):
    """(JIT'd bytes, address of the program's first instruction)."""
    fd = bpf(PROG_GET_FD_BY_ID, struct.pack("III", prog_id, 0, 0))
    info = ctypes.create_string_buffer(512)
    get = lambda: bpf(OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, len(info), ctypes.addressof(info)))
    get()
    # struct bpf_prog_info: jited_prog_len at 16, jited_prog_insns at 24, nr_jited_ksyms at
    # 104, jited_ksyms at 112.
    size, nr_ksyms = struct.unpack_from("I", info, 16)[0], struct.unpack_from("I", info, 104)[0]
    code, ksyms = ctypes.create_string_buffer(size), (ctypes.c_uint64 * max(nr_ksyms, 1))()
    ctypes.memset(info, 0, len(info))
    struct.pack_into("IxxxxQ", info, 16, size, ctypes.addressof(code))
    struct.pack_into("IxxxxQ", info, 104, nr_ksyms, ctypes.addressof(ksyms))
    get()
    return code.raw, ksyms[0]


def main():
    code, start = image(int(sys.argv[1]))
    samples = collections.Counter(int(l, 16) - start for l in open(sys.argv[2]) if l.strip())
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(code)
        f.flush()
        asm = subprocess.run(["objdump", "-b", "binary", "-m", "i386:x86-64", "-D", f.name], capture_output=True, text=True, check=True).stdout
    inside = sum(n for at, n in samples.items() if 0 <= at < len(code))
    hit = 0
    for line in asm.splitlines():
        m = re.match(r"\s+([0-9a-f]+):", line)
        if m:
            n = samples.get(int(m.group(1), 16), 0)
            hit += n > 0
            print(f"{n:6} {line}")
    print(f"# {len(code)} bytes of code, {inside} samples inside, on {hit} distinct instructions")


main()
