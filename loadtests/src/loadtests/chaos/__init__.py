"""The nemesis: overlapping faults on a running platform under a crowd's traffic, a history of
every client operation, and an offline checker of the invariants (``bookify chaos``).

- :mod:`.schedule`: a seeded random schedule of faults over the platform's processes;
- :mod:`.workload`: the crowd (:mod:`loadtests.mix`) as clients that keep a history;
- :mod:`.checker`: reads a history and the stores, and says per invariant what held;
- :mod:`.nemesis`: runs the three against a platform whose processes it is given.
"""
