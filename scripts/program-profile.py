#!/usr/bin/env python3
"""Maps sampled instruction addresses inside a JIT'd BPF program to its source lines.

program-profile.py PROG_ID XLATED_LINUM_DUMP IPS_FILE (see program-profile.sh). The program's
line info (BPF_OBJ_GET_INFO_BY_FD: line_info and jited_line_info) gives, for each source line
record, its translated instruction and its address in the JIT image; bpftool's `linum` dump
names the source line of each translated instruction.
"""
import bisect
import collections
import ctypes
import re
import struct
import sys

BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, SYS_BPF = 13, 15, 321
libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    if libc.syscall(SYS_BPF, cmd, attr, len(attr)) < 0:
        raise OSError(ctypes.get_errno(), "bpf")


def prog_info(fd, fill=None):
    info = ctypes.create_string_buffer(256)
    if fill:
        fill(info)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQ", attr, 0, fd, 256, ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info.raw


def main():
    prog_id, xlated, ips = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<I", attr, 0, prog_id)
    fd = libc.syscall(SYS_BPF, BPF_PROG_GET_FD_BY_ID, attr, 128)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "no such program")
    first = prog_info(fd)
    # struct bpf_prog_info: nr_line_info @148, line_info @152, jited_line_info @160,
    # nr_jited_line_info @168, line_info_rec_size @172, jited_line_info_rec_size @176.
    n_lines, n_jited = struct.unpack_from("<I", first, 148)[0], struct.unpack_from("<I", first, 168)[0]
    lines = ctypes.create_string_buffer(n_lines * 16)
    jited = ctypes.create_string_buffer(n_jited * 8)

    def fill(info):
        struct.pack_into("<IQQI", info, 148, n_lines, ctypes.addressof(lines), ctypes.addressof(jited), n_jited)
        struct.pack_into("<II", info, 172, 16, 8)

    prog_info(fd, fill)
    records = sorted(
        (struct.unpack_from("<Q", jited.raw, i * 8)[0], struct.unpack_from("<I", lines.raw, i * 16)[0]) for i in range(min(n_lines, n_jited))
    )
    source, current = {}, None
    for line in open(xlated):
        if line.startswith(";"):
            current = line.strip()[:160]
        elif m := re.match(r"\s*(\d+):", line):
            source[int(m.group(1))] = current
    addresses = [a for a, _ in records]
    counts = collections.Counter()
    samples = [int(l, 16) for l in open(ips) if l.strip()]
    for ip in samples:
        i = bisect.bisect_right(addresses, ip) - 1
        counts[source.get(records[i][1], "?") if i >= 0 else "(before the first line)"] += 1
    print(f"{len(samples)} samples inside the program")
    for where, n in counts.most_common(40):
        print(f"{n:6d} {100 * n / max(1, len(samples)):5.1f}%  {where}")


if __name__ == "__main__":
    main()
