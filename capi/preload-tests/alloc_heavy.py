"""An allocation-heavy Python workload with a deterministic checksum.

Dicts, lists, strings, sets, tuples, bytes, JSON and regexes, grown and
dropped in rounds, plus threads that build and hand over objects. Run it
with and without the preloaded allocator: the printed checksum must match.
With --oom it instead allocates past the budget and expects MemoryError.
"""
import hashlib
import json
import random
import re
import sys
import threading


def workload(seed, rounds):
    rng = random.Random(seed)
    h = hashlib.sha256()
    keep = []
    for r in range(rounds):
        d = {}
        for i in range(20000):
            k = "k%d_%d" % (r, rng.randrange(1 << 30))
            d[k] = [i, str(i) * (i % 7), (i, r)]
        lst = sorted(d.items())
        s = "".join(k for k, _ in lst[:5000])
        h.update(s.encode())
        words = re.findall(r"k\d+_(\d+)", s)
        h.update(json.dumps(words[:1000]).encode())
        st = {w[:4] for w in words}
        h.update(repr(sorted(st)).encode())
        blob = bytes(rng.randrange(256) for _ in range(50000))
        h.update(blob[::7])
        ba = bytearray(blob)
        ba.extend(ba)
        del ba[::3]
        h.update(bytes(ba[:1000]))
        keep.append(lst[:: 97])
        if len(keep) > 3:
            keep.pop(0)
        big = [[j] * (j % 50) for j in range(3000)]
        h.update(str(sum(len(x) for x in big)).encode())
        del d, lst, big
    h.update(repr(keep).encode())
    return h.hexdigest()


def threaded():
    results = [None] * 4
    handoff = []
    lock = threading.Lock()

    def run(i):
        out = []
        for j in range(20000):
            out.append(("t%d" % i, j, "x" * (j % 100)))
        with lock:
            handoff.append(out)
        results[i] = workload(100 + i, 2)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # free on this thread what the others made
    total = sum(len(x[2]) for out in handoff for x in out)
    handoff.clear()
    return results, total


def oom():
    try:
        hog = []
        for _ in range(1 << 16):
            hog.append(bytearray(8 << 20))
    except MemoryError:
        n = len(hog)
        del hog
        # memory freed after the failure is usable again
        again = [bytearray(1 << 20) for _ in range(4)]
        print("oom: MemoryError after %d MiB, recovered %d MiB" % (n * 8, len(again)))
        return
    print("oom: no MemoryError")
    sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--oom"]:
        oom()
    else:
        print("single:", workload(1, 6))
        res, total = threaded()
        print("threads:", hashlib.sha256(repr(res).encode()).hexdigest(), total)
