#!/usr/bin/env python3
"""Reads every data byte of the files named (holes skipped with SEEK_DATA / SEEK_HOLE),
4 MiB at a time: the reference read of benches/audit/run.sh."""
import os, sys
total = 0
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        pos = start
        while pos < end:
            n = len(os.pread(fd, min(4 << 20, end - pos), pos))
            if n == 0: break
            pos += n; total += n
        off = end
    os.close(fd)
print(f"{total/1e9:.2f} GB of data read")
