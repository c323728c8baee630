"""Benchmarks: one bench run (models, delegates, threads, isolated jobs), baseline models, the merge of benches
from several devices, and the soak harness of ``edge-age run``."""
