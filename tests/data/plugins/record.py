"""Fake bpf_conformance plugin: appends its argv and stdin to $BPFCHECK_RECORD (JSON lines), answers 0x1."""
import json
import os
import sys

data = sys.stdin.read()
with open(os.environ["BPFCHECK_RECORD"], "a", encoding="utf-8") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": data}) + "\n")
print("0x1")
