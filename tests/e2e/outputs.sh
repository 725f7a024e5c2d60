#!/usr/bin/env bash
# End-to-end: where nnqc's outputs go when their path is not a plain file.
#  - A path that is something other than a file or a directory (here a named pipe, as
#    /dev/null, /dev/stdout or a terminal would be) is written in place: the metrics
#    lines, --emit -o and a model file come out of the pipe, and the pipe is still a
#    pipe. (Written as PATH.tmp and renamed over it, they replaced it by a file: run as
#    root, `--metrics /dev/null` or `nnqc build -o /dev/null` replaced the device.)
#  - `nnqc build -o` such a path is refused before any work: a trainer is a file.
#  - A symbolic link is written through: the file it names gets the output, the link
#    stays a link (the rename used to replace the link by a file).
#  - Not through another user's link in a sticky directory anyone may write (/tmp), as
#    the kernel's protected_symlinks rule has it (which is off on some machines: 0 here):
#    a link named PATH is replaced, not followed; one named PATH.tmp is refused (its file
#    was truncated and written). These need root, to own a link as another user.
#  - With standard output closed (`>&-`) the metrics file holds JSON lines only, and the
#    run says it could not write standard output (exit 1): the metrics file used to get
#    descriptor 1, and the epoch lines with it.
# A pipe is what any user can make (a device node needs root); its readers are timed.
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
make_subset "$tmp" 600 200
cd "$tmp"
pass=0; fails=0
sed -e 's/epochs     = 8/epochs = 1/' -e 's/validation = 1000/validation = 100/' "$SRC/tests/e2e/mlp_subset.nnq" > p.nnq
run() { "$NNQC" run "$@" --data-dir "$tmp" --threads 2 --progress=lines --quiet; }

# read_pipe PIPE OUT: a reader of PIPE writing OUT, given 120 s
read_pipe() { timeout 120 cat "$1" > "$2" & }

mkfifo pipe
read_pipe pipe metrics.txt
run p.nnq --metrics pipe > run1.txt 2>&1; rc=$?
wait
[ -p pipe ] && ok "--metrics PIPE: still a pipe" || bad "--metrics PIPE: now $(ls -l pipe)"
[ $rc -eq 0 ] && grep -q '^{"epoch":1,' metrics.txt && grep -q '"final":true' metrics.txt \
    && ok "--metrics PIPE: the lines came through it" || { bad "--metrics PIPE: exit $rc, read:"; cat metrics.txt run1.txt; }
[ ! -e pipe.tmp ] && ok "--metrics PIPE: no pipe.tmp" || bad "--metrics PIPE: pipe.tmp left"

read_pipe pipe ir.txt
"$NNQC" --emit=ir p.nnq -o pipe > emit.txt 2>&1; rc=$?
wait
[ -p pipe ] && [ $rc -eq 0 ] && grep -q '^module @mlp' ir.txt && ok "--emit=ir -o PIPE: written through it" \
    || { bad "--emit=ir -o PIPE: exit $rc, $(ls -l pipe)"; cat emit.txt; }

sed 's|save "mlp_subset.nnqm"|save "pipe"|' p.nnq > topipe.nnq
read_pipe pipe model.nnqm
run topipe.nnq > run2.txt 2>&1; rc=$?
wait
[ -p pipe ] && [ $rc -eq 0 ] && "$NNQC" inspect model.nnqm > inspect.txt 2>&1 && grep -q 'dense1.w' inspect.txt \
    && ok "save to a PIPE: a whole model file came through it" || { bad "save to a PIPE: exit $rc, $(ls -l pipe)"; cat run2.txt inspect.txt; }

"$NNQC" build p.nnq -o pipe > build.txt 2>&1; rc=$?
[ $rc -ne 0 ] && [ -p pipe ] && grep -q "error: cannot write the trainer 'pipe': it is not a regular file" build.txt \
    && ok "build -o PIPE: refused" || { bad "build -o PIPE: exit $rc, $(ls -l pipe)"; cat build.txt; }

# symbolic links: the named file is written, the link stays
mkdir -p out
ln -s out/m.jsonl mlink; ln -s out/model.nnqm modellink; ln -s out/ir.txt irlink
sed 's|save "mlp_subset.nnqm"|save "modellink"|' p.nnq > tolink.nnq
run tolink.nnq --metrics mlink > run3.txt 2>&1 || { cat run3.txt; bad "run with links failed"; }
"$NNQC" --emit=ir p.nnq -o irlink || bad "--emit=ir -o LINK failed"
for l in mlink modellink irlink; do
    t=$(readlink $l)
    [ -L $l ] && [ -f "$t" ] && [ -s "$t" ] && ok "$l: still a link, $t written" || bad "$l: $(ls -l $l $t 2>&1)"
done
grep -q '"final":true' out/m.jsonl && "$NNQC" inspect out/model.nnqm > /dev/null && grep -q '^module @mlp' out/ir.txt \
    && ok "links: each named file holds its output" || bad "links: an output is not whole"
[ -z "$(ls out | grep tmp)" ] && [ -z "$(ls | grep '\.tmp$')" ] && ok "links: no .tmp left" || bad "links: $(ls . out)"

# another user's link
echo precious > victim
if [ "$(id -u)" = 0 ] && id nobody > /dev/null 2>&1; then
    mkdir -m 1777 sticky
    ln -s ../victim sticky/out.txt && chown -h nobody sticky/out.txt
    "$NNQC" --emit=ir p.nnq -o sticky/out.txt > sticky.out 2>&1; rc=$?
    [ $rc -eq 0 ] && [ "$(cat victim)" = precious ] && [ -f sticky/out.txt ] && [ ! -L sticky/out.txt ] && grep -q '^module @mlp' sticky/out.txt \
        && ok "another user's link in a sticky directory: replaced, not followed" || { bad "sticky link: exit $rc, victim: $(head -c 80 victim)"; cat sticky.out; }
    ln -s ../victim sticky/o2.txt.tmp && chown -h nobody sticky/o2.txt.tmp
    "$NNQC" --emit=ir p.nnq -o sticky/o2.txt > sticky2.out 2>&1; rc=$?
    [ $rc -ne 0 ] && [ "$(cat victim)" = precious ] && grep -q "cannot create 'sticky/o2.txt.tmp'" sticky2.out \
        && ok "another user's PATH.tmp link in a sticky directory: refused, its file untouched" || { bad "sticky PATH.tmp: exit $rc, victim: $(head -c 80 victim)"; cat sticky2.out; }
else
    echo "skip another user's link in a sticky directory (needs root)"
fi

# standard output closed
run p.nnq --metrics closed.jsonl >&- 2> closed.txt; rc=$?
[ $rc -eq 1 ] && grep -q "cannot write standard output" closed.txt && ok "stdout closed: exit 1, said" \
    || { bad "stdout closed: exit $rc"; cat closed.txt; }
[ -s closed.jsonl ] && [ -z "$(grep -v '^{' closed.jsonl)" ] && grep -q '"final":true' closed.jsonl \
    && ok "stdout closed: the metrics file holds its JSON lines only" || { bad "stdout closed: the metrics file holds:"; cat closed.jsonl; }

echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
