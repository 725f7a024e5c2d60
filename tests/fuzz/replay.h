/* replay.h — the default-suite main of a fuzz target built without libFuzzer
 * (fuzz_npy_replay, fuzz_model_replay): each file named on the command line goes through
 * LLVMFuzzerTestOneInput whole, then cut at 64 places, then with `mutations` one-byte
 * changes at deterministic pseudo-random places (its last 4 bytes left alone). Include it
 * once, at the end of the target's file, under #ifndef NNQ_LIBFUZZER. Not part of nnq. */
#ifndef NNQ_FUZZ_REPLAY_H
#define NNQ_FUZZ_REPLAY_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int fuzz_replay_main(int argc, char **argv, const char *tool, int mutations) {
    int n = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) {
            perror(argv[a]);
            return 2;
        }
        static uint8_t buf[1 << 20], mut[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        for (int cut = 0; cut <= 64; cut++, n++) /* whole, then cut at 64 places */
            LLVMFuzzerTestOneInput(buf, cut == 64 ? len : len * (size_t)cut / 64);
        uint32_t s = 2463534242u;
        for (int m = 0; m < mutations && len > 4; m++, n++) { /* one byte changed, at random */
            memcpy(mut, buf, len);
            s ^= s << 13, s ^= s >> 17, s ^= s << 5;
            size_t at = s % (len - 4);
            s ^= s << 13, s ^= s >> 17, s ^= s << 5;
            mut[at] = (uint8_t)(m % 3 == 0 ? s : m % 3 == 1 ? mut[at] + 1 : mut[at] ^ 0x80);
            LLVMFuzzerTestOneInput(mut, len);
        }
    }
    printf("%s: %d inputs, no crash\n", tool, n);
    return 0;
}

#endif
