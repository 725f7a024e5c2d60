#!/bin/sh
# run_golden.sh — golden tests of diagnostics.
#
#   run_golden.sh TOOL CASEDIR [EXTRA_ARGS...]
#
# For each CASEDIR/NAME.nnq, runs `TOOL [EXTRA_ARGS...] check NAME.nnq` from inside
# CASEDIR (so messages say `NAME.nnq:LINE:COL`) and compares its stderr followed by a
# last line `exit: N` with CASEDIR/NAME.expected (diff -u). Prints each failure, then
# `N passed, N failed`; exits 1 if any case failed. With NNQ_UPDATE_GOLDEN=1 it
# rewrites the .expected files from the actual output instead (review them by eye).
set -u

if [ $# -lt 2 ]; then
    echo "usage: run_golden.sh TOOL CASEDIR [EXTRA_ARGS...]" >&2
    exit 2
fi
tool=$1
casedir=$2
shift 2

# The tool is run from inside CASEDIR: make its path absolute.
case $tool in
    */*) tool=$(cd "$(dirname "$tool")" && pwd)/$(basename "$tool") ;;
esac
cd "$casedir" || exit 2

tmp=$(mktemp "${TMPDIR:-/tmp}/nnq-golden.XXXXXX") || exit 2
trap 'rm -f "$tmp" "$tmp.diff"' EXIT

passed=0
failed=0
for src in *.nnq; do
    [ -e "$src" ] || continue
    name=${src%.nnq}
    "$tool" "$@" check "$src" >/dev/null 2>"$tmp"
    echo "exit: $?" >>"$tmp"
    if [ "${NNQ_UPDATE_GOLDEN:-0}" = 1 ]; then
        cp "$tmp" "$name.expected"
        passed=$((passed + 1))
    elif diff -u "$name.expected" "$tmp" >"$tmp.diff" 2>&1; then
        passed=$((passed + 1))
    else
        echo "FAIL $casedir/$src"
        cat "$tmp.diff"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
