"""Fake bpf_conformance plugin: dies by SIGABRT on every case."""
import os
import sys

sys.stdin.read()
os.abort()
