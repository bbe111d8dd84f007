"""image-clone benchmarks: ``python -m bench`` (what ``make bench`` runs).

Everything runs in ONE isolated lab (its own etcd, kube-apiserver, controller
manager and two registries under a temporary directory) that is torn down at
the end; the shared lab in ``.lab`` is never touched. Figures are written to
``bench/results.json``; ``python -m bench.doc`` turns that file into the
table and ``docs/benchmarks.md``.
"""

from lab.collection import import_engine

# Every bench module imports the engine as ansible_collections.imageclone.backup.
import_engine()
