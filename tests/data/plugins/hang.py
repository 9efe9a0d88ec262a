"""Fake bpf_conformance plugin: never answers; a child process keeps the pipes open too."""
import subprocess
import sys
import time

sys.stdin.read()
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # inherits stdout/stderr
time.sleep(120)
