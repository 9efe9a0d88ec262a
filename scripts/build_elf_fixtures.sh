#!/bin/sh
# Rebuild the ELF fixtures corpora/elf/*.o from corpora/elf/src/*.c (docs/elf.md).
#
# The objects are committed, so tests never need a compiler; run this after editing a source
# and commit the sources and objects together. Debian's clang-19 is the reference compiler
# (corpora/elf/README.md): other versions emit different, equally valid code, which would change
# the instruction and relocation facts tests/test_elf.py checks.
#
#   scripts/build_elf_fixtures.sh            # all sources
#   CLANG=/path/to/clang-19 scripts/build_elf_fixtures.sh
set -eu

CLANG=${CLANG:-clang-19}
if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "build_elf_fixtures: '$CLANG' not found; install Debian's clang-19 (apt-get install -y clang-19)" \
		"or set CLANG" >&2
	exit 1
fi
case "$("$CLANG" --version | head -n 1)" in
*"clang version 19."*) ;;
*) echo "build_elf_fixtures: warning: $CLANG is not clang 19; the objects will differ from the committed ones" >&2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/corpora/elf/src"
out="$root/corpora/elf"
cd "$src"
for c in *.c; do
	o="$out/${c%.c}.o"
	# -fdebug-prefix-map keeps the build directory out of DWARF and BTF, so rebuilding anywhere
	# gives the same bytes.
	"$CLANG" -O2 -g -target bpf -mcpu=v3 -fdebug-prefix-map="$src"=. -c "$c" -o "$o"
	echo "built corpora/elf/${c%.c}.o"
done
