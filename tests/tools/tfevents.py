#!/usr/bin/env python3
"""tfevents.py FILE — read a TensorBoard event file with the standard library.

Checks the TFRecord framing (both masked CRC-32C values of every record),
decodes each tensorflow.Event (wall_time 1, step 2, file_version 3,
summary 5 -> Summary.value 1 -> {tag 1, simple_value 2}) and prints

    version <file_version>            for the first record
    <step> <tag> <value %.9g>         for every scalar

Exit 1 with a message on any framing, checksum or decoding error.  Written
independently of libcore/metrics.c so the test reads the file the way
TensorBoard does.
"""
import struct
import sys
import time


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fields(buf):
    """Yield (field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = varint(buf, i)
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        if i > len(buf):
            raise ValueError("field %d runs past the message" % num)
        yield num, wire, val


def varint(buf, i):
    v = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def main(path):
    data = open(path, "rb").read()
    pos = rec = 0
    now = time.time()
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("record %d: truncated header" % rec)
        head = data[pos:pos + 8]
        (n,) = struct.unpack("<Q", head)
        (hcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if hcrc != masked(head):
            raise ValueError("record %d: bad length checksum" % rec)
        body = data[pos + 12:pos + 12 + n]
        if len(body) != n or pos + 16 + n > len(data):
            raise ValueError("record %d: truncated" % rec)
        (dcrc,) = struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])
        if dcrc != masked(body):
            raise ValueError("record %d: bad data checksum" % rec)
        pos += 16 + n
        step, version, scalars, wall = 0, None, [], None
        for num, wire, val in fields(body):
            if num == 1 and wire == 1:
                (wall,) = struct.unpack("<d", val)
            elif num == 2 and wire == 0:
                step = val
            elif num == 3 and wire == 2:
                version = val.decode()
            elif num == 5 and wire == 2:
                for vnum, _, value in fields(val):
                    if vnum != 1:
                        continue
                    tag, simple = None, None
                    for f, w, x in fields(value):
                        if f == 1 and w == 2:
                            tag = x.decode()
                        elif f == 2 and w == 5:
                            (simple,) = struct.unpack("<f", x)
                    if tag is None or simple is None:
                        raise ValueError("record %d: value without tag or simple_value" % rec)
                    scalars.append((tag, simple))
        if wall is None or abs(wall - now) > 3600:
            raise ValueError("record %d: wall_time %r is not now" % (rec, wall))
        if rec == 0:
            if version is None:
                raise ValueError("record 0: no file_version")
            print("version", version)
        for tag, simple in scalars:
            print(step, tag, "%.9g" % simple)
        rec += 1


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except (ValueError, OSError, UnicodeDecodeError) as e:
        sys.exit("tfevents.py: '%s': %s" % (sys.argv[1], e))
