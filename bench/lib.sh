# bench/lib.sh — helpers the benchmark scripts share (sourced).
# profile_ms LINE [PHASE]: from a --profile metrics line (its "profile" JSON object),
# milliseconds per training iteration after the first (which pays for first touches of
# memory): of PHASE, or, without one, of every phase but evaluation (the step).
profile_ms() {
    awk -v l="$1" -v want="${2:-}" 'BEGIN {
        split(l, halves, /"first_iteration":/)
        iters = 0; sum = 0
        n = split(halves[1], kv, /[{},]/)
        for (i = 1; i <= n; i++) {
            if (kv[i] ~ /"iterations":/) { split(kv[i], a, ":"); iters = a[2] }
            else if (kv[i] ~ /^"[a-z_]*":[0-9.]+$/) { split(kv[i], a, ":"); if (pick(a[1])) sum += a[2] }
        }
        n = split(halves[2], kv, /[{},]/)
        for (i = 1; i <= n; i++)
            if (kv[i] ~ /^"[a-z_]*":[0-9.]+$/) { split(kv[i], a, ":"); if (pick(a[1])) sum -= a[2] }
        printf "%.3f", 1000 * sum / (iters - 1) }
    function pick(k) { gsub(/"/, "", k); return want != "" ? k == want : k !~ /^(eval|peak_rss_mib)$/ }'
}

# ir_counts NNQC PROGRAM: "PARAMS BN_FEATURES BNS" of a program, from nnqc --emit=ir.
ir_counts() {
    "$1" --emit=ir "$2" | awk '
        /^param @/ { s = $0; sub(/.*f32\[/, "", s); sub(/\].*/, "", s); n = split(s, d, ", "); c = 1; for (i = 1; i <= n; i++) c *= d[i]; p += c }
        /^bn @/ { f += $4; b++ }
        END { printf "%d %d %d\n", p, f, b }'
}
