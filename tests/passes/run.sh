#!/bin/sh
# run.sh NNQC DIR — the pass tests: one file per pass, QBE-style, its expectation inside.
#
# DIR/PASS.ir holds a module as printed before PASS (`; IR after` the pass before it),
# then a line `; EXPECT after PASS`, then the module as printed after PASS, each line
# behind "; " (or a bare ";" for an empty line). DIR/lower.nnq is the same for the first
# pass, whose input is a program (lines behind "# "). DIR/*.bad.ir hold IR text that
# must be refused: after `; EXPECT error` comes nnqc's message, caret line included.
# Each case runs `nnqc check --from-ir FILE --dump-after=PASS` (or on the program) and
# must print exactly the expectation. NNQ_UPDATE_GOLDEN=1 rewrites the expectations
# from what nnqc prints (review them by eye). Prints `N passed, N failed`.
set -u
NNQC=$1; DIR=$2
case $NNQC in */*) NNQC=$(cd "$(dirname "$NNQC")" && pwd)/$(basename "$NNQC") ;; esac
cd "$DIR" || exit 2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
passed=0; failed=0
for f in *.nnq *.ir; do
    [ -e "$f" ] || continue
    c=$(printf '%s' "$f" | sed 's/\.nnq$/#/;s/\.ir$/;/;s/.*\(.\)$/\1/')   # the comment character
    mark=$(grep -n "^$c EXPECT " "$f" | head -1)
    [ -n "$mark" ] || { echo "FAIL $f: no '$c EXPECT' line"; failed=$((failed + 1)); continue; }
    line=${mark%%:*}; what=${mark#*EXPECT }
    input="$tmp/$f"; head -n $((line - 1)) "$f" > "$input"
    tail -n +$((line + 1)) "$f" | sed "s/^$c \{0,1\}//" > "$tmp/expected"
    case $what in
    "after "*)
        pass=${what#after }
        if [ "${f%.nnq}" != "$f" ]; then "$NNQC" check --dump-after="$pass" "$input" > "$tmp/got" 2>&1
        else (cd "$tmp" && "$NNQC" check --from-ir "$f" --dump-after="$pass" > got 2>&1); fi ;;
    error)
        (cd "$tmp" && "$NNQC" check --from-ir "$f" > got 2>&1) && echo "FAIL $f: accepted" ;;
    *) echo "FAIL $f: EXPECT after PASS, or EXPECT error"; failed=$((failed + 1)); continue ;;
    esac
    if [ "${NNQ_UPDATE_GOLDEN:-0}" = 1 ]; then
        { head -n "$line" "$f"; sed "s/^/$c /;s/ $//" "$tmp/got"; } > "$tmp/new" && cp "$tmp/new" "$f"
        passed=$((passed + 1))
    elif diff -u "$tmp/expected" "$tmp/got" > "$tmp/diff"; then
        passed=$((passed + 1))
    else
        echo "FAIL $f"; cat "$tmp/diff"; failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
