# Resumes `dainet simulate` from N copies of one checkpoint, each with one random byte changed,
# and counts how many resume with exit code 0 (issue 11: a damaged checkpoint must be refused).
#
#   python3 scripts/mutated_checkpoints.py DAINET [N=1000] [SEED=11]
#
# It writes a 1-round run with a checkpoint (MNIST, logistic regression, no ledger, so each
# resume takes about a second), then for each copy: XORs one byte, chosen uniformly over the
# whole file, with a random non-zero value; resumes to round 2; records the exit code.
# Prints one line per exit code and, for resumes that succeeded, which part of the file the
# changed byte was in (the 8-byte header length, the JSON header, the tensor data).
import collections, os, random, shutil, subprocess, sys, tempfile

dainet = os.path.abspath(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 11)
flags = ["--model", "lr", "--no-ledger"]

work = tempfile.mkdtemp(prefix="dainet-mutckpt-")
base = os.path.join(work, "base")
subprocess.run([dainet, "simulate", "--out", base, "--rounds", "1", "--checkpoint-every", "1", *flags],
               check=True, capture_output=True)
good = open(os.path.join(base, "checkpoints", "round-0001.safetensors"), "rb").read()
header_end = 8 + int.from_bytes(good[:8], "little")

codes = collections.Counter()
ok_parts = collections.Counter()
for i in range(n):
    at = rng.randrange(len(good))
    bad = bytearray(good)
    bad[at] ^= rng.randrange(1, 256)
    ckpt = os.path.join(work, "round-0001.safetensors")
    open(ckpt, "wb").write(bad)
    out = os.path.join(work, "run")
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([dainet, "simulate", "--out", out, "--rounds", "2", "--resume", ckpt, *flags],
                       capture_output=True, text=True)
    codes[r.returncode] += 1
    if "panicked" in r.stderr:
        codes["panic"] += 1
    if r.returncode == 0:
        ok_parts["length" if at < 8 else "header" if at < header_end else "tensors"] += 1
shutil.rmtree(work, ignore_errors=True)
print(f"checkpoint {len(good)} bytes (header {header_end}), {n} copies with one byte changed")
for code, count in sorted(codes.items(), key=str):
    print(f"exit {code}: {count}")
print("resumed with exit 0, by where the changed byte was:", dict(ok_parts))
