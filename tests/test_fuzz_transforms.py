"""The randomized differential harness (tests/fuzz.py) in the test suite.

Random programs under random towers of transforms, with closures and aliased inputs
and outputs, checked against finite differences. Seeded, so a failure names a case
that reproduces: ``python -m tests.fuzz --start SEED --cases 1``. CI runs a few
seconds' worth per backend; ``AGRAD_FUZZ_CASES=N`` runs more.
"""

from __future__ import annotations

import os

from tests import fuzz

CASES = int(os.environ.get("AGRAD_FUZZ_CASES", "60"))


def test_random_programs_under_random_transforms_match_finite_differences(backend_device):
    name, dev = backend_device
    n, failures = fuzz.run(CASES, start=0, backend_name=name, device=dev, stop_after=3)
    assert not failures, f"{len(failures)} of {n} cases disagree with finite differences:\n\n" + "\n\n".join(failures)


def test_random_programs_under_vmap_match_the_loop_over_examples(backend_device):
    # Every case with vmap levels (inside and outside the derivatives, nested): each checked
    # against the loop over its examples, the levels above it against finite differences.
    name, dev = backend_device
    n, failures = fuzz.run(max(CASES // 2, 1), start=100_000, backend_name=name, device=dev, stop_after=3,
                           vmap_rate=1.0)
    assert not failures, f"{len(failures)} of {n} cases disagree:\n\n" + "\n\n".join(failures)


def _mismatches(failures):
    """The reports of wrong values (not of exceptions)."""
    return [f for f in failures if not f.startswith("raised")]


def test_the_harness_catches_a_batching_rule_that_mixes_up_examples(monkeypatch):
    # multiply's batching rule gives every example another example's product: right shapes,
    # wrong values, which only the comparison with the loop over examples can see.
    from agrad.batching import rules
    from agrad.ops import elementwise

    prim = elementwise.multiply_p
    right = rules.elementwise(prim)

    def reversed_examples(xp, dims, *args, **params):
        out, d = right(xp, dims, *args, **params)
        return out[(slice(None),) * d + (slice(None, None, -1),)], d

    monkeypatch.setitem(prim.rules, "batch", reversed_examples)
    _, failures = fuzz.run(60, start=100_000, vmap_rate=1.0, stop_after=60)
    assert _mismatches(failures), "no wrong value found:\n\n" + "\n\n".join(failures[:3])


def test_the_harness_catches_a_batching_rule_with_the_wrong_batch_axis(monkeypatch):
    # add's rule moves the examples to the front but reports them where they were: a silent
    # transposition where the sizes agree, a wrong shape elsewhere.
    from agrad.batching import rules
    from agrad.ops import elementwise

    prim = elementwise.add_p
    right = rules.elementwise(prim)

    def wrong_axis(xp, dims, *args, **params):
        out, d = right(xp, dims, *args, **params)
        return rules.moveaxis(xp, out, d, 0), d

    monkeypatch.setitem(prim.rules, "batch", wrong_axis)
    _, failures = fuzz.run(60, start=100_000, vmap_rate=1.0, stop_after=60)
    assert [f for f in failures if "has no batching rule" not in f], "\n\n".join(failures[:3])


def test_the_harness_catches_a_wrong_derivative(monkeypatch):
    # A test that cannot fail is a defect: break the sine rule and the harness must notice.
    from agrad import tape
    from agrad.ops import elementwise

    rules = elementwise.sin_p.rules
    monkeypatch.setitem(rules, "vjp", tape.per_argument_vjp("sin", [lambda xp, g, ans, x: g * xp.cos(x) * 1.001]))
    monkeypatch.setitem(rules, "jvp", tape.per_argument_jvp("sin", [lambda xp, t, ans, x: t * xp.cos(x) * 1.001]))
    _, failures = fuzz.run(40, start=0, stop_after=1)
    assert failures


def test_the_harness_catches_a_dropped_in_place_update(monkeypatch):
    # The bug this harness's in-place statements exist for: updates that keep the value but
    # drop the derivative (z[i] = x, z += x recorded as nothing).
    from agrad import inplace

    monkeypatch.setattr(inplace, "_recorded", lambda t, value: False)
    _, failures = fuzz.run(60, start=0, stop_after=1)
    assert failures


def test_the_harness_catches_uses_that_see_an_update_made_after_them(monkeypatch):
    # Uses recorded before an update must keep the old value's history.
    from agrad import tape

    monkeypatch.setattr(tape, "_resolve_args", lambda t: None)
    _, failures = fuzz.run(100, start=0, stop_after=1)
    assert failures
