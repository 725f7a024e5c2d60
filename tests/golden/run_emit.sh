#!/bin/sh
# run_emit.sh — golden tests of nnqc's stage dumps (tokens, AST, IR).
#
#   run_emit.sh TOOL GOLDENDIR SRCDIR [EXTRA_ARGS...]
#
# For each GOLDENDIR/NAME.tokens, NAME.ast and NAME.ir, runs
# `TOOL [EXTRA_ARGS...] --emit=tokens|ast|ir NAME.nnq` from inside SRCDIR and compares its stdout
# with the golden file (diff -u); the tool must also exit 0 and print nothing on
# stderr. Prints each failure, then `N passed, N failed`; exits 1 if any case failed.
# With NNQ_UPDATE_GOLDEN=1 it rewrites the golden files instead (review them by eye).
set -u

if [ $# -lt 3 ]; then
    echo "usage: run_emit.sh TOOL GOLDENDIR SRCDIR [EXTRA_ARGS...]" >&2
    exit 2
fi
tool=$1
goldendir=$(cd "$2" && pwd) || exit 2
srcdir=$3
shift 3

case $tool in
    */*) tool=$(cd "$(dirname "$tool")" && pwd)/$(basename "$tool") ;;
esac
cd "$srcdir" || exit 2

tmp=$(mktemp "${TMPDIR:-/tmp}/nnq-emit.XXXXXX") || exit 2
trap 'rm -f "$tmp" "$tmp.err" "$tmp.diff"' EXIT

passed=0
failed=0
for golden in "$goldendir"/*.tokens "$goldendir"/*.ast "$goldendir"/*.ir; do
    [ -e "$golden" ] || continue
    base=$(basename "$golden")
    name=${base%.*}
    mode=${base##*.}
    "$tool" "$@" "--emit=$mode" "$name.nnq" >"$tmp" 2>"$tmp.err"
    status=$?
    if [ "${NNQ_UPDATE_GOLDEN:-0}" = 1 ] && [ $status -eq 0 ]; then
        cp "$tmp" "$golden"
        passed=$((passed + 1))
    elif [ $status -ne 0 ] || [ -s "$tmp.err" ]; then
        echo "FAIL $base: exit $status"
        cat "$tmp.err"
        failed=$((failed + 1))
    elif diff -u "$golden" "$tmp" >"$tmp.diff" 2>&1; then
        passed=$((passed + 1))
    else
        echo "FAIL $base"
        cat "$tmp.diff"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
