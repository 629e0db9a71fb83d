"""Per-field cost of encrypted fields (CONTRACT §10): ``python -m bench.crypto``.

Measures, per call, on this machine and one core:

* ``encrypt_value``: JSON-encode an e-mail address and turn it into the JSON
  envelope under a cached cipher (the worker's hot path per encrypted field);
* ``encrypt_field_binary``: the Avro (bytes) form;
* ``decrypt_value``: the SDK side, cached cipher;
* ``ensure`` (first use of a subject: new key, wrap) and a cold decrypt
  (unwrap + cipher set-up + decrypt), paid once per subject and process.

Each figure is the best of ``--repeat`` timed runs of ``--n`` calls (the best,
because other processes share the cores; it is the cost, not a latency).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from streams.crypto import KeyRing, Kek, decrypt_value, encrypt_field_binary, encrypt_value, new_kek_text

#: Distinct subjects cycled through, so the ring's dict lookups are not all one hot slot.
SUBJECTS = 1000


def best_us(fn: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="calls per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    args = ap.parse_args(argv)

    kek = Kek.from_text(new_kek_text())
    ring = KeyRing(kek)
    subjects = [f"customer-{i:06d}" for i in range(SUBJECTS)]
    for s in subjects:
        ring.ensure(s, 0)
    email = "firstname.lastname@example.com"
    envs = [encrypt_value(ring, s, "email", email) for s in subjects]

    def enc(n: int) -> None:
        for i in range(n):
            encrypt_value(ring, subjects[i % SUBJECTS], "email", email)

    def enc_bin(n: int) -> None:
        plain = b'"' + email.encode() + b'"'
        for i in range(n):
            encrypt_field_binary(ring, subjects[i % SUBJECTS], "email", plain)

    def dec(n: int) -> None:
        for i in range(n):
            j = i % SUBJECTS
            decrypt_value(ring, subjects[j], "email", envs[j])

    def new_keys(n: int) -> None:
        r = KeyRing(kek)
        for i in range(n):
            r.ensure(f"s{i}", 0)

    key_values = [(s, KeyRing(kek).ensure(s, 0)) for s in subjects]

    def cold_dec(n: int) -> None:
        r = KeyRing(kek)
        for s, rec in key_values:
            r.add_record(s, rec)
        for i in range(min(n, SUBJECTS)):
            s = key_values[i][0]
            env = encrypt_value(r, s, "email", email)  # unwraps (cold) ...
            decrypt_value(r, s, "email", env)           # ... then warm

    n, rep = args.n, args.repeat
    rows = [
        ("encrypt_value (JSON envelope, cached cipher)", best_us(enc, n, rep)),
        ("encrypt_field_binary (Avro envelope, cached cipher)", best_us(enc_bin, n, rep)),
        ("decrypt_value (cached cipher)", best_us(dec, n, rep)),
        ("ensure: new data key + wrap (once per subject)", best_us(new_keys, min(n, 20_000), rep)),
        ("first use after restore: unwrap + encrypt + decrypt", best_us(cold_dec, SUBJECTS, rep)),
    ]
    print(f"per-field cost, best of {rep} runs ({n} calls each; {SUBJECTS} subjects; "
          f"value {len(email)} chars, envelope {len(envs[0])} chars)")
    for name, us in rows:
        print(f"  {name:55} {us:7.2f} µs")


if __name__ == "__main__":
    main()
