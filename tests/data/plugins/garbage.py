"""Fake bpf_conformance plugin: exit 0 with output that stoull(s, 16) would read as 3."""
import sys

sys.stdin.read()
print("0x3 trailing garbage")
