/* edgec_nn: int8 kernels for edgec's generated models. See edgec_nn.h for the contract. */
#include "edgec_nn.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEC_PORTABLE) /* -DEDGEC_PORTABLE: plain C */
#include <arm_acle.h>
#define EDGEC_DSP 1
#else
#define EDGEC_DSP 0
#endif

__attribute__((always_inline)) static inline int8_t requant(int32_t acc, int32_t mult,
                                                           int32_t shift, int8_t lo, int8_t hi)
{
    int32_t r;
    if (shift > 32 && shift < 64) {
        /* multipliers below 1/4, the usual case: the rounding term 2^(shift - 1) is a multiple
         * of 2^32, so floor((acc * mult + 2^(shift - 1)) / 2^shift) is the high word of
         * acc * mult (one SMULL) plus 2^(shift - 33), shifted by shift - 32; no 64-bit add.
         * |high word| < 2^30, so the sum cannot overflow. */
        const int32_t high = (int32_t)(((int64_t)acc * mult) >> 32);
        r = (high + (1 << (shift - 33))) >> (shift - 32);
    } else {
        const int64_t w = ((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift;
        r = w > INT32_MAX ? INT32_MAX : w < INT32_MIN ? INT32_MIN : (int32_t)w;
    }
    return (int8_t)(r < lo ? lo : r > hi ? hi : r);
}

#if EDGEC_DSP
static inline int32_t read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4); /* one LDR: Armv7E-M loads unaligned words */
    return v;
}

static inline int32_t read_s16x2(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* SXTB16 of the word rotated by 8: the odd bytes. One instruction (GCC would emit two). */
static inline int32_t sxtb16_ror8(uint32_t v)
{
    int32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* The low halves of a and b (b's on top), and the high halves; GCC's arm_acle.h has no
 * __pkhbt/__pkhtb. */
static inline uint32_t pack_low(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t pack_high(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* x0..x3 as int16 in the order SXTB16 unpacks weights: x0, x2, x1, x3 (two SXTB16, two
 * word stores; dst is word-aligned). */
static inline void expand4(const int8_t *x, int16_t *dst)
{
    const uint32_t v = (uint32_t)read_s8x4(x);
    const int32_t even = __sxtb16(v), odd = sxtb16_ror8(v);
    memcpy(dst, &even, 4);
    memcpy(dst + 2, &odd, 4);
}

/* SMMUL: the high word of a * b, as requant's one-word path takes it. */
static inline int32_t smmul(int32_t a, int32_t b)
{
    int32_t r;
    __asm("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* The clamp of requant's one-word path as one saturating instruction, which also takes its
 * final >> 1: SSAT for [-128, 127] (no activation), USAT for [0, 127] (a ReLU). */
enum { CLAMP_ANY, CLAMP_S8, CLAMP_U7 };

static int clamp_kind(int8_t lo, int8_t hi)
{
    return hi != 127 ? CLAMP_ANY : lo == -128 ? CLAMP_S8 : lo == 0 ? CLAMP_U7 : CLAMP_ANY;
}

/* requant(acc, mult, shift, ...) for shift in (32, 64) and a CLAMP_S8 / CLAMP_U7 range, given
 * k = shift - 33: (high >> k) + 1, then >> 1 and clamped by SSAT/USAT. */
__attribute__((always_inline)) static inline int8_t requant_sat(int32_t acc, int32_t mult,
                                                               int32_t k, int kind)
{
    const int32_t t = (smmul(acc, mult) >> k) + 1;
    int32_t r;
    if (kind == CLAMP_S8) {
        __asm("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(t));
    } else {
        __asm("usat %0, #7, %1, asr #1" : "=r"(r) : "r"(t));
    }
    return (int8_t)r;
}

/* 16 MACs: the next 4 weights of two channels (one doubleword, interleaved by the generator)
 * against the next 4 values of two pixels' columns (two doublewords, see im2col). */
#define MAC_2X2                                                                             \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                                                     \
    "ldrd %[x02], %[x13], [%[c]], #8\n\t"                                                   \
    "ldrd %[y02], %[y13], [%[c]], #8\n\t"                                                   \
    "sxtb16 %[w02], %[wa]\n\t"                                                              \
    "sxtb16 %[wa], %[wa], ror #8\n\t"                                                       \
    "smlad %[a00], %[w02], %[x02], %[a00]\n\t"                                              \
    "smlad %[a01], %[w02], %[y02], %[a01]\n\t"                                              \
    "smlad %[a00], %[wa], %[x13], %[a00]\n\t"                                               \
    "smlad %[a01], %[wa], %[y13], %[a01]\n\t"                                               \
    "sxtb16 %[w02], %[wb]\n\t"                                                              \
    "sxtb16 %[wb], %[wb], ror #8\n\t"                                                       \
    "smlad %[a10], %[w02], %[x02], %[a10]\n\t"                                              \
    "smlad %[a11], %[w02], %[y02], %[a11]\n\t"                                              \
    "smlad %[a10], %[wb], %[x13], %[a10]\n\t"                                               \
    "smlad %[a11], %[wb], %[y13], %[a11]\n\t"

/* The same 16 MACs from weights widened at build time (edgec_conv_t.w16): each channel's next
 * 4 weights are one doubleword of int16 in SXTB16 order, so no SXTB16: 12 instructions. */
#define MAC_2X2_W16                                                                         \
    "ldrd %[w02], %[wa], [%[w]], #8\n\t"                                                    \
    "ldrd %[x02], %[x13], [%[c]], #8\n\t"                                                   \
    "ldrd %[y02], %[y13], [%[c]], #8\n\t"                                                   \
    "smlad %[a00], %[w02], %[x02], %[a00]\n\t"                                              \
    "smlad %[a01], %[w02], %[y02], %[a01]\n\t"                                              \
    "smlad %[a00], %[wa], %[x13], %[a00]\n\t"                                               \
    "smlad %[a01], %[wa], %[y13], %[a01]\n\t"                                               \
    "ldrd %[w02], %[wa], [%[w]], #8\n\t"                                                    \
    "smlad %[a10], %[w02], %[x02], %[a10]\n\t"                                              \
    "smlad %[a11], %[w02], %[y02], %[a11]\n\t"                                              \
    "smlad %[a10], %[wa], %[x13], %[a10]\n\t"                                               \
    "smlad %[a11], %[wa], %[y13], %[a11]\n\t"

/* Every pair of output channels against two pixels' columns over k (a multiple of 4),
 * requantized and stored (o1 may equal o0: an odd last pixel paired with itself). One asm
 * block, as GCC spilled: per pair, the inner loop 15 instructions per 16 MACs (unrolled twice),
 * then 4 outputs requantized in registers with SSAT/USAT (`sat`), the pointers kept in
 * memory. `w` interleaves each pair's rows in groups of 4 bytes (the generator lays them out
 * so), `col` the two pixels' columns in groups of 4 int16. */
#define DOT_2X2(MAC, sat_op, bits)                                                             \
    __asm volatile(                                                                         \
        "1:\n\t"                                                                            \
        "ldr %[wa], %[q]\n\t"                                                               \
        "ldrd %[a00], %[a10], [%[wa]]\n\t"                                                  \
        "mov %[a01], %[a00]\n\t"                                                            \
        "mov %[a11], %[a10]\n\t"                                                            \
        "ldr %[c], %[col]\n\t"                                                              \
        "ldr %[n], %[quads]\n\t"                                                            \
        "tst %[n], #1\n\t"                                                                  \
        "beq 3f\n\t" MAC "3:\n\t"                                                       \
        "lsrs %[n], %[n], #1\n\t"                                                           \
        "beq 4f\n\t"                                                                        \
        "2:\n\t" MAC MAC "subs %[n], %[n], #1\n\t"                                  \
        "bne 2b\n\t"                                                                        \
        "4:\n\t"                                                                            \
        "ldr %[wa], %[q]\n\t"                                                               \
        "ldrd %[x02], %[x13], [%[wa], #8]\n\t"                                              \
        "ldrd %[y02], %[y13], [%[wa], #16]\n\t"                                             \
        "add %[wa], %[wa], #24\n\t"                                                         \
        "str %[wa], %[q]\n\t"                                                               \
        "smmul %[a00], %[a00], %[x02]\n\t"                                                  \
        "smmul %[a01], %[a01], %[x02]\n\t"                                                  \
        "smmul %[a10], %[a10], %[x13]\n\t"                                                  \
        "smmul %[a11], %[a11], %[x13]\n\t"                                                  \
        "asr %[a00], %[a00], %[y02]\n\t"                                                    \
        "asr %[a01], %[a01], %[y02]\n\t"                                                    \
        "asr %[a10], %[a10], %[y13]\n\t"                                                    \
        "asr %[a11], %[a11], %[y13]\n\t"                                                    \
        "add %[a00], %[a00], #1\n\t"                                                        \
        "add %[a01], %[a01], #1\n\t"                                                        \
        "add %[a10], %[a10], #1\n\t"                                                        \
        "add %[a11], %[a11], #1\n\t" sat_op " %[a00], " bits ", %[a00], asr #1\n\t" sat_op  \
        " %[a01], " bits ", %[a01], asr #1\n\t" sat_op " %[a10], " bits                     \
        ", %[a10], asr #1\n\t" sat_op " %[a11], " bits ", %[a11], asr #1\n\t"               \
        "ldr %[wa], %[o0]\n\t"                                                              \
        "ldr %[wb], %[delta]\n\t"                                                           \
        "strb %[a00], [%[wa]]\n\t"                                                          \
        "strb %[a10], [%[wa], #1]\n\t"                                                      \
        "add %[wb], %[wb], %[wa]\n\t"                                                       \
        "strb %[a01], [%[wb]]\n\t"                                                          \
        "strb %[a11], [%[wb], #1]\n\t"                                                      \
        "add %[wa], %[wa], #2\n\t"                                                          \
        "str %[wa], %[o0]\n\t"                                                              \
        "ldr %[wa], %[pairs]\n\t"                                                           \
        "subs %[wa], %[wa], #1\n\t"                                                         \
        "str %[wa], %[pairs]\n\t"                                                           \
        "bne 1b\n\t"                                                                        \
        : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11),           \
          [wa] "=&r"(wa), [wb] "=&r"(wb), [w02] "=&r"(w02), [x02] "=&r"(x02),               \
          [x13] "=&r"(x13), [y02] "=&r"(y02), [y13] "=&r"(y13), [c] "=&r"(c), [n] "=&r"(n), \
          [w] "+r"(w), [q] "+m"(q), [o0] "+m"(o0), [pairs] "+m"(pairs)                      \
        : [col] "m"(col), [quads] "m"(quads), [delta] "m"(delta)                            \
        : "cc", "memory")

/* The products of `pairs` (> 0) pairs of output channels with two pixels' columns, requantized
 * with the clamp of `kind`, o1 - o0 = delta bytes apart: see DOT_2X2. `q` holds each pair's
 * {bias0, bias1, mult0, mult1, shift0 - 33, shift1 - 33} (edgec_conv_t.pairs). */
__attribute__((noinline)) static void dot_2x2_sat(const int8_t *w, const int16_t *col,
                                                  uint32_t k, const int32_t *q, int8_t *o0,
                                                  int32_t delta, uint32_t pairs, int kind)
{
    const uint32_t quads = k / 4;
    int32_t a00, a01, a10, a11, wa, wb, w02, x02, x13, y02, y13, n;
    const int16_t *c;
    if (kind == CLAMP_S8) {
        DOT_2X2(MAC_2X2, "ssat", "#8");
    } else {
        DOT_2X2(MAC_2X2, "usat", "#7");
    }
}

/* dot_2x2_sat from weights widened at build time (edgec_conv_t.w16, see MAC_2X2_W16). */
__attribute__((noinline)) static void dot_2x2_sat16(const int16_t *w, const int16_t *col,
                                                    uint32_t k, const int32_t *q, int8_t *o0,
                                                    int32_t delta, uint32_t pairs, int kind)
{
    const uint32_t quads = k / 4;
    int32_t a00, a01, a10, a11, wa, wb, w02, x02, x13, y02, y13, n;
    const int16_t *c;
    if (kind == CLAMP_S8) {
        DOT_2X2(MAC_2X2_W16, "ssat", "#8");
    } else {
        DOT_2X2(MAC_2X2_W16, "usat", "#7");
    }
}

/* acc_p[c] = bias[c] + w_c . col_p for `pairs` pairs of channels, unrequantized (layers whose
 * shifts or clamp the saturating path does not cover). */
__attribute__((noinline, optimize("O2"))) static void dot_2x2_acc(const int8_t *w,
                                                                   const int16_t *col,
                                                                   uint32_t k,
                                                                   const int32_t *bias,
                                                                   int32_t *acc0, int32_t *acc1,
                                                                   uint32_t pairs)
{
    for (; pairs > 0; pairs--, bias += 2, acc0 += 2, acc1 += 2) {
        int32_t a00 = bias[0], a01 = bias[0], a10 = bias[1], a11 = bias[1];
        const int16_t *c = col;
        for (uint32_t n = k / 4; n > 0; n--) {
            uint32_t wa, wb;
            int32_t x02, x13, y02, y13;
            __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(wa), "=r"(wb), "+r"(w) : : "memory");
            __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(x02), "=r"(x13), "+r"(c) : : "memory");
            __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(y02), "=r"(y13), "+r"(c) : : "memory");
            int32_t wa02 = __sxtb16(wa), wb02 = __sxtb16(wb);
            int32_t wa13 = sxtb16_ror8(wa), wb13 = sxtb16_ror8(wb);
            a00 = __smlad(wa02, x02, a00);
            a01 = __smlad(wa02, y02, a01);
            a10 = __smlad(wb02, x02, a10);
            a11 = __smlad(wb02, y02, a11);
            a00 = __smlad(wa13, x13, a00);
            a01 = __smlad(wa13, y13, a01);
            a10 = __smlad(wb13, x13, a10);
            a11 = __smlad(wb13, y13, a11);
        }
        acc0[0] = a00, acc0[1] = a10;
        acc1[0] = a01, acc1[1] = a11;
    }
}

/* One channel against one column whose groups of 4 int16 are `step` apart (4: contiguous,
 * 8: pixel 0 of an interleaved pair, from col + 4: pixel 1). */
__attribute__((noinline)) static int32_t dot_1x1(const int8_t *w, const int16_t *c, uint32_t k,
                                                 uint32_t step, int32_t acc)
{
    for (uint32_t n = k / 4; n > 0; n--) {
        uint32_t wa = (uint32_t)read_s8x4(w);
        acc = __smlad(__sxtb16(wa), read_s16x2(c), acc);
        acc = __smlad(sxtb16_ror8(wa), read_s16x2(c + 2), acc);
        w += 4;
        c += step;
    }
    return acc;
}

/* Four rows of a dense layer against one expanded input (k a multiple of 4): the generator
 * interleaves the rows in groups of 4 bytes, so two doublewords hold the four rows' next 4
 * weights and each input doubleword feeds 16 MACs: 21 instructions per 16 MACs. */
__attribute__((noinline, optimize("O2"))) static void dot_4rows(const int8_t *w,
                                                                 const int16_t *x, uint32_t k,
                                                                 int32_t acc[4])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (uint32_t n = k / 4; n > 0; n--) {
        uint32_t v0, v1;
        int32_t x02, x13;
        __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(x02), "=r"(x13), "+r"(x) : : "memory");
        __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(v0), "=r"(v1), "+r"(w) : : "memory");
        a0 = __smlad(__sxtb16(v0), x02, a0);
        a0 = __smlad(sxtb16_ror8(v0), x13, a0);
        a1 = __smlad(__sxtb16(v1), x02, a1);
        a1 = __smlad(sxtb16_ror8(v1), x13, a1);
        __asm volatile("ldrd %0, %1, [%2], #8" : "=r"(v0), "=r"(v1), "+r"(w) : : "memory");
        a2 = __smlad(__sxtb16(v0), x02, a2);
        a2 = __smlad(sxtb16_ror8(v0), x13, a2);
        a3 = __smlad(__sxtb16(v1), x02, a3);
        a3 = __smlad(sxtb16_ror8(v1), x13, a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* n values (a multiple of 4) as int16 in expand4 order, in groups of 4 every 8 elements. */
__attribute__((noinline, optimize("O2"))) static void widen_run(const int8_t *src, uint32_t n,
                                                                int16_t *col)
{
    for (; n > 0; n -= 4, src += 4, col += 8) {
        const uint32_t v = (uint32_t)read_s8x4(src);
        const int32_t even = __sxtb16(v), odd = sxtb16_ror8(v);
        memcpy(col, &even, 4);
        memcpy(col + 2, &odd, 4);
    }
}

/* `rows` rows of `row` bytes, `stride` apart in the input, end to end into dst: a word at a
 * time (Armv7E-M loads and stores unaligned words), then the odd bytes. */
__attribute__((noinline, optimize("O2"))) static void copy_rows(const int8_t *src, uint32_t row,
                                                                uint32_t stride, uint32_t rows,
                                                                int8_t *dst)
{
    for (; rows > 0; rows--, src += stride, dst += row) {
        uint32_t i = 0;
        for (; i + 4 <= row; i += 4) {
            const int32_t v = read_s8x4(src + i);
            memcpy(dst + i, &v, 4);
        }
        for (; i < row; i++) {
            dst[i] = src[i];
        }
    }
}

/* im2col for channel counts that are not a multiple of 4 (a first layer's 1 or 3 channels):
 * a receptive field's row is k_w * in_c contiguous bytes in NHWC. Rows of a multiple of 4
 * bytes (a 1-channel 10x4 kernel) are widened straight from the input, 4 values at a time;
 * others are copied word by word into `field` as int8 rows, zero where padded and up to a
 * multiple of 4, then widened. */
static void im2col_any(const edgec_conv_t *p, const int8_t *in, int oy, int ox, int16_t *col,
                       int8_t *field)
{
    const uint32_t c_n = p->in_c, row = (uint32_t)p->k_w * c_n;
    const int ix0 = ox * p->s_w - p->p_l, ix1 = ix0 + (p->k_w - 1) * p->d_w;
    const int dense_row = p->d_w == 1 && ix0 >= 0 && ix1 < p->in_w;
    const int iy0 = oy * p->s_h - p->p_t, iy1 = iy0 + (p->k_h - 1) * p->d_h;
    if (dense_row && row % 4 && iy0 >= 0 && iy1 < p->in_h) { /* an interior pixel */
        const uint32_t k = row * p->k_h, stride = (uint32_t)p->d_h * p->in_w * c_n;
        copy_rows(in + ((uint32_t)iy0 * p->in_w + (uint32_t)ix0) * c_n, row, stride, p->k_h,
                  field);
        for (uint32_t j = k; j % 4; j++) {
            field[j] = 0;
        }
        widen_run(field, (k + 3u) & ~3u, col);
        return;
    }
    if (row % 4 == 0 && dense_row) { /* whole groups per row: no int8 copy */
        for (int ky = 0; ky < p->k_h; ky++) {
            const int iy = oy * p->s_h - p->p_t + ky * p->d_h;
            if (iy >= 0 && iy < p->in_h) {
                const int8_t *src = in + ((uint32_t)iy * p->in_w + (uint32_t)ix0) * c_n;
                for (uint32_t j = 0; j < row; j += 4, col += 8) {
                    expand4(src + j, col);
                }
            } else {
                for (uint32_t j = 0; j < row; j += 4, col += 8) {
                    memset(col, 0, 8);
                }
            }
        }
        return;
    }
    int8_t *dst = field;
    for (int ky = 0; ky < p->k_h; ky++) {
        const int iy = oy * p->s_h - p->p_t + ky * p->d_h;
        const int row_inside = iy >= 0 && iy < p->in_h;
        if (row_inside && dense_row) { /* the whole row: contiguous in NHWC */
            const int8_t *src = in + ((uint32_t)iy * p->in_w + (uint32_t)ix0) * c_n;
            uint32_t i = 0;
            for (; i + 4 <= row; i += 4) { /* unaligned words: Armv7E-M allows them */
                const int32_t v = read_s8x4(src + i);
                memcpy(dst + i, &v, 4);
            }
            for (; i < row; i++) {
                dst[i] = src[i];
            }
            dst += row;
            continue;
        }
        for (int kx = 0; kx < p->k_w; kx++, dst += c_n) {
            const int ix = ox * p->s_w - p->p_l + kx * p->d_w;
            if (row_inside && ix >= 0 && ix < p->in_w) {
                const int8_t *src = in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * c_n;
                for (uint32_t c = 0; c < c_n; c++) {
                    dst[c] = src[c];
                }
            } else {
                for (uint32_t c = 0; c < c_n; c++) {
                    dst[c] = 0;
                }
            }
        }
    }
    const uint32_t k = (uint32_t)(dst - field);
    for (uint32_t j = k; j % 4; j++) {
        field[j] = 0;
    }
    for (uint32_t j = 0; j < k; j += 4, col += 8) {
        expand4(field + j, col);
    }
}

/* One output pixel's receptive field as int16 in expand4 order, zeros where padded, written
 * in groups of 4 every 8 elements (its pair pixel fills the gaps). */
static void im2col(const edgec_conv_t *p, const int8_t *in, int oy, int ox, int16_t *col,
                   int8_t *field)
{
    if (p->in_c % 4 != 0) {
        im2col_any(p, in, oy, ox, col, field);
        return;
    }
    if (p->k_h == 1 && p->k_w == 1 && p->p_t == 0 && p->p_l == 0) { /* 1x1: one pixel */
        const uint32_t iy = (uint32_t)oy * p->s_h, ix = (uint32_t)ox * p->s_w;
        widen_run(in + (iy * p->in_w + ix) * p->in_c, p->in_c, col);
        return;
    }
    int16_t *dst = col;
    for (int ky = 0; ky < p->k_h; ky++) {
        int iy = oy * p->s_h - p->p_t + ky * p->d_h;
        for (int kx = 0; kx < p->k_w; kx++) {
            int ix = ox * p->s_w - p->p_l + kx * p->d_w;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            /* only form the address inside the input: C allows no pointer outside it */
            const int8_t *src =
                inside ? in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c : in;
            for (int c = 0; c < p->in_c; c += 4, dst += 8) {
                if (inside) {
                    expand4(src + c, dst);
                } else {
                    dst[0] = dst[1] = dst[2] = dst[3] = 0;
                }
            }
        }
    }
}

/* Whether every shift takes requant's one-word path: checked once per layer. */
static int one_word_shifts(const int32_t *shift, uint32_t n)
{
    int fast = 1;
    for (uint32_t i = 0; i < n; i++) {
        fast &= shift[i] > 32 && shift[i] < 64;
    }
    return fast;
}

/* out[i] = requant(acc[i], mult[i], shift[i], lo, hi) for shifts in (32, 64), checked by the
 * caller. Out of line so that its few live values stay in registers: 13 instructions each. */
__attribute__((noinline, optimize("O2"))) static void requant_run(const int32_t *acc,
                                                                   const int32_t *mult,
                                                                   const int32_t *shift,
                                                                   uint32_t n, int32_t lo,
                                                                   int32_t hi, int8_t *out)
{
    for (const int32_t *end = acc + n; acc < end;) {
        const int32_t high = (int32_t)(((int64_t)*acc++ * *mult++) >> 32);
        const int32_t r = ((high >> (*shift++ - 33)) + 1) >> 1; /* = requant's */
        *out++ = (int8_t)(r < lo ? lo : r > hi ? hi : r);
    }
}

/* The 3x3 depthwise path's geometry: each channel is copied into a plane of int16 with the
 * padding as zeros (plane_h x plane_w, one spare column so that a word load at a window's
 * last tap stays in the plane). */
static uint32_t plane_w(const edgec_conv_t *p)
{
    const int right = (p->out_w - 1) * p->s_w + p->k_w - p->p_l - p->in_w;
    return (uint32_t)(p->p_l + p->in_w + (right > 0 ? right : 0) + 1);
}

static uint32_t plane_h(const edgec_conv_t *p)
{
    const int bottom = (p->out_h - 1) * p->s_h + p->k_h - p->p_t - p->in_h;
    return (uint32_t)(p->p_t + p->in_h + (bottom > 0 ? bottom : 0));
}

/* The planes' row pitch on the asm path, a constant: one pointer then reaches a window's three
 * rows by immediate offsets, and the two registers that row pointers took hold two more
 * accumulators. Planes up to DW_PITCH / 2 wide hold two channels side by side in each row;
 * wider ones (up to DW_PITCH) one; still wider ones take their own width and portable C. */
#define DW_ROW_BYTES 128
#define DW_PITCH (DW_ROW_BYTES / 2)
#define DW_STR(x) #x
#define DW_XSTR(x) DW_STR(x)
/* The word at byte `off` of the window's row r (a string: "0", "1", "2") */
#define DW_AT(r, off) "[%[x], #" r "*" DW_XSTR(DW_ROW_BYTES) "+" off "]"

/* Four outputs ox..ox+3 at stride 1, window row r, all but (x0, x1): (x1, x2), (x3, x4),
 * (x2, x3) times (w0, w1) = wp by SMLAD, x2..x5 (the halves of two words) times w2 (the half
 * h of ws). f1..f3 are what a1..a3 start from: a0 (the bias) on row 0, else themselves. */
#define DW_QUAD_S1(r, wp, ws, h, f1, f2, f3)                                                \
    "ldr %[t], " DW_AT(r, "2") "\n\t"                                                       \
    "smlad %[a1], %[t], " wp ", " f1 "\n\t"                                                 \
    "ldr %[t], " DW_AT(r, "6") "\n\t"                                                       \
    "smlad %[a3], %[t], " wp ", " f3 "\n\t"                                                 \
    "ldr %[t], " DW_AT(r, "4") "\n\t"                                                       \
    "smlad %[a2], %[t], " wp ", " f2 "\n\t"                                                 \
    "smlab" h " %[a0], %[t], " ws ", %[a0]\n\t"                                             \
    "smlat" h " %[a1], %[t], " ws ", %[a1]\n\t"                                             \
    "ldr %[t], " DW_AT(r, "8") "\n\t"                                                       \
    "smlab" h " %[a2], %[t], " ws ", %[a2]\n\t"                                             \
    "smlat" h " %[a3], %[t], " ws ", %[a3]\n\t"

/* The same at stride 2: (x2, x3), (x4, x5), (x6, x7) times (w0, w1); x2, x4, x6, x8 times
 * w2. */
#define DW_QUAD_S2(r, wp, ws, h, f1, f2, f3)                                                \
    "ldr %[t], " DW_AT(r, "12") "\n\t"                                                      \
    "smlad %[a3], %[t], " wp ", " f3 "\n\t"                                                 \
    "smlab" h " %[a2], %[t], " ws ", " f2 "\n\t"                                            \
    "ldr %[t], " DW_AT(r, "8") "\n\t"                                                       \
    "smlab" h " %[a1], %[t], " ws ", " f1 "\n\t"                                            \
    "smlad %[a2], %[t], " wp ", %[a2]\n\t"                                                  \
    "ldr %[t], " DW_AT(r, "16") "\n\t"                                                      \
    "smlab" h " %[a3], %[t], " ws ", %[a3]\n\t"                                             \
    "ldr %[t], " DW_AT(r, "4") "\n\t"                                                       \
    "smlad %[a1], %[t], " wp ", %[a1]\n\t"                                                  \
    "smlab" h " %[a0], %[t], " ws ", %[a0]\n\t"

/* Two outputs at stride 1, all but (x0, x1): (x1, x2) times (w0, w1), x2 and x3 times w2. */
#define DW_PAIR_S1(r, wp, ws, h, f1)                                                        \
    "ldr %[t], " DW_AT(r, "2") "\n\t"                                                       \
    "smlad %[a1], %[t], " wp ", " f1 "\n\t"                                                 \
    "ldr %[t], " DW_AT(r, "4") "\n\t"                                                       \
    "smlab" h " %[a0], %[t], " ws ", %[a0]\n\t"                                             \
    "smlat" h " %[a1], %[t], " ws ", %[a1]\n\t"

/* At stride 2: (x2, x3) times (w0, w1), x2 and x4 times w2. */
#define DW_PAIR_S2(r, wp, ws, h, f1)                                                        \
    "ldr %[t], " DW_AT(r, "4") "\n\t"                                                       \
    "smlad %[a1], %[t], " wp ", " f1 "\n\t"                                                 \
    "smlab" h " %[a0], %[t], " ws ", %[a0]\n\t"                                             \
    "ldr %[t], " DW_AT(r, "8") "\n\t"                                                       \
    "smlab" h " %[a1], %[t], " ws ", %[a1]\n\t"

/* The first output's (x0, x1) of row r; of row 0 last, its load moving x on by `step`. */
#define DW_X01(r, wp)                                                                       \
    "ldr %[t], " DW_AT(r, "0") "\n\t"                                                       \
    "smlad %[a0], %[t], " wp ", %[a0]\n\t"
#define DW_X01_LAST(step)                                                                   \
    "ldr %[t], [%[x]], #" step "\n\t"                                                       \
    "smlad %[a0], %[t], %[w0], %[a0]\n\t"

/* A whole window (three rows) of four or two outputs, starting from the bias. */
#define DW_WINDOW4(QUAD, step)                                                              \
    "ldr %[a0], %[bias]\n\t" QUAD("0", "%[w0]", "%[wa]", "b", "%[a0]", "%[a0]", "%[a0]")    \
        QUAD("1", "%[w1]", "%[wa]", "t", "%[a1]", "%[a2]", "%[a3]") DW_X01("1", "%[w1]")    \
            QUAD("2", "%[w2]", "%[wb]", "b", "%[a1]", "%[a2]", "%[a3]")                     \
                DW_X01("2", "%[w2]") DW_X01_LAST(step)
#define DW_WINDOW2(PAIR, step)                                                              \
    "ldr %[a0], %[bias]\n\t" PAIR("0", "%[w0]", "%[wa]", "b", "%[a0]")                      \
        PAIR("1", "%[w1]", "%[wa]", "t", "%[a1]") DW_X01("1", "%[w1]")                      \
            PAIR("2", "%[w2]", "%[wb]", "b", "%[a1]") DW_X01("2", "%[w2]") DW_X01_LAST(step)

/* Requantize a0..a3 (shifts in (32, 64); `sat` is "ssat %[a], #8" or "usat %[a], #7") and
 * store them c_n apart. */
#define DW_REQUANT_QUAD(sat)                                                                \
    "ldr %[t], %[mult]\n\t"                                                                 \
    "smmul %[a0], %[a0], %[t]\n\t"                                                          \
    "smmul %[a1], %[a1], %[t]\n\t"                                                          \
    "smmul %[a2], %[a2], %[t]\n\t"                                                          \
    "smmul %[a3], %[a3], %[t]\n\t"                                                          \
    "ldr %[t], %[k]\n\t"                                                                    \
    "asr %[a0], %[a0], %[t]\n\t"                                                            \
    "asr %[a1], %[a1], %[t]\n\t"                                                            \
    "asr %[a2], %[a2], %[t]\n\t"                                                            \
    "asr %[a3], %[a3], %[t]\n\t"                                                            \
    "add %[a0], %[a0], #1\n\t"                                                              \
    "add %[a1], %[a1], #1\n\t"                                                              \
    "add %[a2], %[a2], #1\n\t"                                                              \
    "add %[a3], %[a3], #1\n\t"                                                              \
    sat("a0") ", %[a0], asr #1\n\t"                                                         \
    sat("a1") ", %[a1], asr #1\n\t"                                                         \
    sat("a2") ", %[a2], asr #1\n\t"                                                         \
    sat("a3") ", %[a3], asr #1\n\t"                                                         \
    "strb %[a0], [%[o]]\n\t"                                                                \
    "strb %[a1], [%[o], %[c_n]]\n\t"                                                        \
    "add %[o], %[o], %[c_n], lsl #1\n\t"                                                    \
    "strb %[a2], [%[o]]\n\t"                                                                \
    "strb %[a3], [%[o], %[c_n]]\n\t"                                                        \
    "add %[o], %[o], %[c_n], lsl #1\n\t"

/* Requantize a0 and a1 and store them c_n apart. */
#define DW_REQUANT_PAIR(sat)                                                                \
    "ldr %[t], %[mult]\n\t"                                                                 \
    "smmul %[a0], %[a0], %[t]\n\t"                                                          \
    "smmul %[a1], %[a1], %[t]\n\t"                                                          \
    "ldr %[t], %[k]\n\t"                                                                    \
    "asr %[a0], %[a0], %[t]\n\t"                                                            \
    "asr %[a1], %[a1], %[t]\n\t"                                                            \
    "add %[a0], %[a0], #1\n\t"                                                              \
    "add %[a1], %[a1], #1\n\t"                                                              \
    sat("a0") ", %[a0], asr #1\n\t"                                                         \
    sat("a1") ", %[a1], asr #1\n\t"                                                         \
    "strb %[a0], [%[o]]\n\t"                                                                \
    "strb %[a1], [%[o], %[c_n]]\n\t"                                                        \
    "add %[o], %[o], %[c_n], lsl #1\n\t"

/* One output alone (the last of a row of odd width), x not moved. */
#define DW_SINGLE(sat)                                                                      \
    "ldr %[a0], %[bias]\n\t"                                                                \
    "ldr %[t], [%[x]]\n\t"                                                                  \
    "smlad %[a0], %[t], %[w0], %[a0]\n\t"                                                   \
    "ldr %[t], " DW_AT("0", "4") "\n\t"                                                     \
    "smlabb %[a0], %[t], %[wa], %[a0]\n\t"                                                  \
    "ldr %[t], " DW_AT("1", "0") "\n\t"                                                     \
    "smlad %[a0], %[t], %[w1], %[a0]\n\t"                                                   \
    "ldr %[t], " DW_AT("1", "4") "\n\t"                                                     \
    "smlabt %[a0], %[t], %[wa], %[a0]\n\t"                                                  \
    "ldr %[t], " DW_AT("2", "0") "\n\t"                                                     \
    "smlad %[a0], %[t], %[w2], %[a0]\n\t"                                                   \
    "ldr %[t], " DW_AT("2", "4") "\n\t"                                                     \
    "smlabb %[a0], %[t], %[wb], %[a0]\n\t"                                                  \
    "ldr %[t], %[mult]\n\t"                                                                 \
    "smmul %[a0], %[a0], %[t]\n\t"                                                          \
    "ldr %[t], %[k]\n\t"                                                                    \
    "asr %[a0], %[a0], %[t]\n\t"                                                            \
    "add %[a0], %[a0], #1\n\t"                                                              \
    sat("a0") ", %[a0], asr #1\n\t"                                                         \
    "strb %[a0], [%[o]]\n\t"                                                                \
    "add %[o], %[o], %[c_n]\n\t"

#define DW_SSAT(a) "ssat %[" a "], #8"
#define DW_USAT(a) "usat %[" a "], #7"

/* A whole channel, row by row: its outputs four at a time (none when the row is narrower),
 * then two and one as `tail` says (bit 1: a pair, bit 0: a single; LSLS #31 puts them in C and
 * N, which the pair's code leaves alone), then the window moves down a row (x_step bytes from
 * where the row left it) and o by o_step (0 unless the plane is transposed).
 * Registers: 5 weights, the window pointer x, 4 accumulators, a temporary, o, c_n, end. */
#define DW_CHANNEL(QUAD, PAIR, step4, step2, sat)                                           \
    __asm volatile("2:\n\t"                                                                 \
                   "ldr %[t], %[q_bytes]\n\t"                                               \
                   "add %[end], %[o], %[t]\n\t"                                             \
                   "cmp %[o], %[end]\n\t"                                                   \
                   "beq 4f\n\t"                                                             \
                   "1:\n\t" DW_WINDOW4(QUAD, step4) DW_REQUANT_QUAD(sat)                    \
                   "cmp %[o], %[end]\n\t"                                                   \
                   "bne 1b\n\t"                                                             \
                   "4:\n\t"                                                                 \
                   "ldr %[t], %[tail]\n\t"                                                  \
                   "lsls %[t], %[t], #31\n\t"                                               \
                   "bcc 5f\n\t" DW_WINDOW2(PAIR, step2) DW_REQUANT_PAIR(sat) "5:\n\t"       \
                   "bpl 6f\n\t" DW_SINGLE(sat) "6:\n\t"                                     \
                   "ldr %[t], %[o_step]\n\t"                                                \
                   "add %[o], %[o], %[t]\n\t"                                               \
                   "ldr %[t], %[x_step]\n\t"                                                \
                   "add %[x], %[x], %[t]\n\t"                                               \
                   "ldr %[t], %[o_last]\n\t"                                                \
                   "cmp %[o], %[t]\n\t"                                                     \
                   "bne 2b\n\t"                                                             \
                   : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),        \
                     [t] "=&r"(t), [end] "=&r"(end), [x] "+r"(x), [o] "+r"(o)               \
                   : [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2), [wa] "r"(wa), [wb] "r"(wb),  \
                     [c_n] "r"(c_n), [bias] "m"(bias), [mult] "m"(mult), [k] "m"(k),        \
                     [q_bytes] "m"(q_bytes), [tail] "m"(tail), [x_step] "m"(x_step),        \
                     [o_step] "m"(o_step), [o_last] "m"(o_last)                             \
                   : "cc", "memory")

/* One channel of a 3x3 depthwise convolution from its plane (rows DW_ROW_BYTES apart),
 * requantized with the clamp of `kind` (shifts in (32, 64)). Outputs go four at a time along a
 * row, sharing their loads: a row of the four windows is five LDR, four SMLAD on adjacent
 * pairs against (w0, w1) held in a register, and four SMLAxy for the w2 taps (w2 of two rows
 * packed in one register): 66 instructions per 36 MACs with requantization and the bias, the
 * multiplier and the shift read once per four outputs. All nine weights stay in five
 * registers for the whole channel. */
__attribute__((always_inline)) static inline void dw3x3_channel(
    const edgec_conv_t *p, const int16_t *plane, const int8_t *w, int32_t bias, int32_t mult,
    int32_t shift, int8_t *out, uint32_t c_n, uint32_t row, int stride, int kind)
{
    const int32_t w0 = (int32_t)(((uint32_t)(uint16_t)w[1] << 16) | (uint16_t)w[0]);
    const int32_t w1 = (int32_t)(((uint32_t)(uint16_t)w[4] << 16) | (uint16_t)w[3]);
    const int32_t w2 = (int32_t)(((uint32_t)(uint16_t)w[7] << 16) | (uint16_t)w[6]);
    const int32_t wa = (int32_t)(((uint32_t)(uint16_t)w[5] << 16) | (uint16_t)w[2]);
    const int32_t wb = (int32_t)(uint16_t)w[8];
    const int32_t k = shift - 33;
    const uint32_t ow = p->out_w, quads = ow / 4, rem = ow % 4;
    const uint32_t q_bytes = quads * 4 * c_n, tail = (rem >= 2 ? 2u : 0u) | (rem & 1u);
    /* bytes from where a row's fours and pair leave the window (a single does not move it) to
     * the next row's first */
    const int32_t x_step = (int32_t)(p->s_h * DW_ROW_BYTES) -
                           (int32_t)((quads * 8 + (rem >= 2 ? 4 : 0)) * (uint32_t)stride);
    const int32_t o_step = (int32_t)row - (int32_t)(ow * c_n);
    const uintptr_t o_last = (uintptr_t)out + p->out_h * row; /* o after the last row */
    const int16_t *x = plane;
    int8_t *o = out, *end;
    int32_t a0, a1, a2, a3, t;
    if (stride == 1) {
        if (kind == CLAMP_S8) {
            DW_CHANNEL(DW_QUAD_S1, DW_PAIR_S1, "8", "4", DW_SSAT);
        } else {
            DW_CHANNEL(DW_QUAD_S1, DW_PAIR_S1, "8", "4", DW_USAT);
        }
    } else {
        if (kind == CLAMP_S8) {
            DW_CHANNEL(DW_QUAD_S2, DW_PAIR_S2, "16", "8", DW_SSAT);
        } else {
            DW_CHANNEL(DW_QUAD_S2, DW_PAIR_S2, "16", "8", DW_USAT);
        }
    }
}

/* dw3x3_channel for each stride and clamp: constants inside; pw is DW_PITCH. */
#define DW3X3(name, stride, kind)                                                           \
    __attribute__((noinline, optimize("O2"))) static void name(                             \
        const edgec_conv_t *p, const int16_t *plane, uint32_t pw, const int8_t *w,          \
        int32_t bias, int32_t mult, int32_t shift, int8_t *out, uint32_t c_n, uint32_t row) \
    {                                                                                       \
        (void)pw;                                                                           \
        dw3x3_channel(p, plane, w, bias, mult, shift, out, c_n, row, stride, kind);         \
    }
DW3X3(dw3x3_s1_s8, 1, CLAMP_S8)
DW3X3(dw3x3_s1_u7, 1, CLAMP_U7)
DW3X3(dw3x3_s2_s8, 2, CLAMP_S8)
DW3X3(dw3x3_s2_u7, 2, CLAMP_U7)

/* The same for any stride and clamp: portable C on the plane, requant's general rule. */
__attribute__((noinline, optimize("O2"))) static void dw3x3_any(
    const edgec_conv_t *p, const int16_t *plane, uint32_t pw, const int8_t *w, int32_t bias,
    int32_t mult, int32_t shift, int8_t *out, uint32_t c_n, uint32_t row)
{
    for (int oy = 0; oy < p->out_h; oy++, out += row) {
        int8_t *o = out;
        for (int ox = 0; ox < p->out_w; ox++, o += c_n) {
            const int16_t *x = plane + (oy * p->s_h) * pw + ox * p->s_w;
            int32_t acc = bias;
            for (int ky = 0; ky < 3; ky++, x += pw) {
                acc += x[0] * w[3 * ky] + x[1] * w[3 * ky + 1] + x[2] * w[3 * ky + 2];
            }
            *o = requant(acc, mult, shift, p->lo, p->hi);
        }
    }
}

/* One channel of an NHWC input into h rows of w elements of a plane of int16, pw apart: the
 * input's elements c_n bytes apart, its rows `row` bytes apart (transposed: the other way
 * round); two elements per word store (rows may start at odd elements: STR takes unaligned
 * addresses on Armv7E-M). */
__attribute__((noinline, optimize("O2"))) static void widen_channel(const int8_t *first,
                                                                    uint32_t c_n, uint32_t row,
                                                                    int16_t *dst, uint32_t pw,
                                                                    uint32_t h, uint32_t w)
{
    const uint32_t two = 2 * c_n;
    for (; h > 0; h--, dst += pw, first += row) {
        const int8_t *src = first;
        int16_t *d = dst;
        uint32_t n = w;
        for (; n >= 2; n -= 2, d += 2, src += two) {
            const uint32_t v = pack_low((uint32_t)(int32_t)src[0], (uint32_t)(int32_t)src[c_n]);
            memcpy(d, &v, 4);
        }
        if (n) {
            *d = *src;
        }
    }
}

/* Two channels' pixels: the halfwords at p and p + c_n, which SXTB16 splits into the two
 * planes' pairs of int16. */
static inline uint32_t two_pixels(const int8_t *p, uint32_t c_n)
{
    uint16_t a, b;
    memcpy(&a, p, 2);
    memcpy(&b, p + c_n, 2);
    return a | (uint32_t)b << 16;
}

/* Two adjacent channels (c, c + 1) into the two halves of the planes' rows (DW_PITCH apart,
 * the second channel DW_PITCH / 2 on): one LDRH per pixel reads both, SXTB16 splits two
 * pixels into the two planes' words; four pixels per pass. */
__attribute__((noinline, optimize("O2"))) static void widen_two(const int8_t *first,
                                                                uint32_t c_n, uint32_t row,
                                                                int16_t *dst, uint32_t h,
                                                                uint32_t w)
{
    const uint32_t two = 2 * c_n, four = 4 * c_n;
    for (; h > 0; h--, dst += DW_PITCH, first += row) {
        const int8_t *src = first;
        int16_t *d = dst;
        uint32_t n = w;
        for (; n >= 4; n -= 4, d += 4, src += four) {
            const uint32_t v = two_pixels(src, c_n), u = two_pixels(src + two, c_n);
            const int32_t v0 = __sxtb16(v), v1 = sxtb16_ror8(v);
            const int32_t u0 = __sxtb16(u), u1 = sxtb16_ror8(u);
            memcpy(d, &v0, 4);
            memcpy(d + DW_PITCH / 2, &v1, 4);
            memcpy(d + 2, &u0, 4);
            memcpy(d + DW_PITCH / 2 + 2, &u1, 4);
        }
        if (n >= 2) {
            const uint32_t v = two_pixels(src, c_n);
            const int32_t v0 = __sxtb16(v), v1 = sxtb16_ror8(v);
            memcpy(d, &v0, 4);
            memcpy(d + DW_PITCH / 2, &v1, 4);
            n -= 2, d += 2, src += two;
        }
        if (n) {
            d[0] = src[0];
            d[DW_PITCH / 2] = src[1];
        }
    }
}

/* The row pitch (int16 elements) of geometry p's planes: DW_PITCH where the asm path can take
 * them, else their own width (portable C). */
static uint32_t pitch(const edgec_conv_t *p)
{
    return plane_w(p) <= DW_PITCH ? DW_PITCH : plane_w(p);
}

/* p with height and width exchanged: a layer whose output is taller than wide runs transposed
 * (the DS-CNN's 25 x 5: rows of 25 outputs, 12 pairs and one odd, instead of 25 rows of 2
 * pairs and one odd each), so each row's set-up and odd output are paid 5 times, not 25. */
static edgec_conv_t transposed(const edgec_conv_t *p)
{
    edgec_conv_t t = *p;
    t.in_h = p->in_w, t.in_w = p->in_h, t.out_h = p->out_w, t.out_w = p->out_h;
    t.k_h = p->k_w, t.k_w = p->k_h, t.s_h = p->s_w, t.s_w = p->s_h, t.p_t = p->p_l;
    t.p_l = p->p_t;
    return t;
}

/* 3x3 depthwise convolution on the DSP, undilated, any channel count; weights C x 9 (the
 * generator lays them out so). Channel by channel: the channel is widened into a plane of
 * int16 (scratch: plane_h rows of pitch(), padding zeroed once), where a window row's taps are
 * adjacent, so one LDR and one SMLAD take two of them. A layer taller than wide runs
 * transposed (rows of out_h outputs), and so does one whose plane only fits DW_PITCH so; the
 * generator sizes the scratch by the same rule (plane_h * pitch, of the orientation taken). */
static void depthwise_3x3_dsp(const edgec_conv_t *layer, const int8_t *in, int8_t *out,
                              int16_t *plane)
{
    const uint32_t c_n = layer->out_c;
    const edgec_conv_t t = transposed(layer);
    const int fits = plane_w(layer) <= DW_PITCH, t_fits = plane_w(&t) <= DW_PITCH;
    const int flip = t_fits && (!fits || layer->out_h > layer->out_w);
    const edgec_conv_t *p = flip ? &t : layer;
    /* the input's and the output's element and row strides in the plane's orientation */
    const uint32_t in_row = layer->in_w * c_n, out_row = layer->out_w * c_n;
    const uint32_t in_step = flip ? in_row : c_n, in_next = flip ? c_n : in_row;
    const uint32_t out_step = flip ? out_row : c_n, out_next = flip ? c_n : out_row;
    const uint32_t pw = pitch(p);
    const int32_t *bias = p->bias, *mult = p->mult, *shift = p->shift;
    const int8_t *w = p->w; /* C x 9, transposed with the plane by the generator */
    const int kind = one_word_shifts(shift, c_n) ? clamp_kind(p->lo, p->hi) : CLAMP_ANY;
    void (*channel)(const edgec_conv_t *, const int16_t *, uint32_t, const int8_t *, int32_t,
                    int32_t, int32_t, int8_t *, uint32_t, uint32_t) = dw3x3_any;
    if (kind != CLAMP_ANY && p->s_w <= 2 && pw == DW_PITCH) {
        channel = p->s_w == 1 ? (kind == CLAMP_S8 ? dw3x3_s1_s8 : dw3x3_s1_u7)
                              : (kind == CLAMP_S8 ? dw3x3_s2_s8 : dw3x3_s2_u7);
    }
    const uint32_t first = p->p_t * pw + p->p_l;
    uint32_t c = 0;
    memset(plane, 0, plane_h(p) * pw * sizeof(int16_t));
    if (plane_w(p) <= DW_PITCH / 2) { /* two channels side by side, widened at once */
        int16_t *plane1 = plane + DW_PITCH / 2;
        for (; c + 1 < c_n; c += 2) {
            widen_two(in + c, in_step, in_next, plane + first, p->in_h, p->in_w);
            channel(p, plane, pw, w + 9 * c, bias[c], mult[c], shift[c], out + c, out_step,
                    out_next);
            channel(p, plane1, pw, w + 9 * (c + 1), bias[c + 1], mult[c + 1], shift[c + 1],
                    out + c + 1, out_step, out_next);
        }
    }
    for (; c < c_n; c++) {
        widen_channel(in + c, in_step, in_next, plane + first, pw, p->in_h, p->in_w);
        channel(p, plane, pw, w + 9 * c, bias[c], mult[c], shift[c], out + c, out_step,
                out_next);
    }
}

/* Depthwise convolution on the DSP (channels a multiple of 4). The generator lays the weights
 * out per group of 4 channels, per pair of taps (t0, t1), as two words [w(t0, c) w(t0, c+1)
 * w(t1, c) w(t1, c+1)] [same for c+2, c+3]; an odd last tap follows as one word. Input
 * words of the pair's two taps are packed the same way (PKHBT/PKHTB), so SXTB16 and one SMLAD
 * add two taps of one channel. Taps outside the input read a run of zeros: per output pixel a
 * table of tap pointers is built once, and the channel loop has no bounds checks. */
__attribute__((optimize("O2"))) static void depthwise_dsp(const edgec_conv_t *p,
                                                          const int8_t *in, int8_t *out,
                                                          int16_t *scratch)
{
    const uint32_t c_n = p->out_c, taps = (uint32_t)p->k_h * p->k_w, pairs = taps / 2;
    int32_t *accs = (int32_t *)(void *)scratch;                /* c_n accumulators */
    const int8_t **table = (const int8_t **)(void *)(accs + c_n); /* taps tap pointers */
    int8_t *zeros = (int8_t *)(table + taps + 1);              /* c_n bytes */
    /* locals: the int8 stores below could alias *p, which GCC would then reload per store */
    const int32_t *bias = p->bias, *mult = p->mult, *shift = p->shift;
    const int8_t lo = p->lo, hi = p->hi;
    const int fast = one_word_shifts(shift, c_n);
    memset(zeros, 0, c_n);
    for (int oy = 0; oy < p->out_h; oy++) {
        for (int ox = 0; ox < p->out_w; ox++) {
            uint32_t t = 0;
            for (int ky = 0; ky < p->k_h; ky++) {
                const int iy = oy * p->s_h - p->p_t + ky * p->d_h;
                for (int kx = 0; kx < p->k_w; kx++, t++) {
                    const int ix = ox * p->s_w - p->p_l + kx * p->d_w;
                    const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                    table[t] =
                        inside ? in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * c_n : zeros;
                }
            }
            const int8_t *w = p->w;
            for (uint32_t c = 0; c < c_n; c += 4) {
                int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                const int8_t *const *tp = table;
                uint32_t n = pairs, wa, wb, t0, t1, x0, x1;
                /* per pair of taps: 20 instructions, 8 MACs; written out because GCC spilled
                 * an accumulator */
                if (n > 0) __asm volatile(
                    "1:\n\t"
                    "ldrd %[wa], %[wb], [%[w]], #8\n\t"
                    "ldrd %[t0], %[t1], [%[tp]], #8\n\t"
                    "ldr %[x0], [%[t0], %[c]]\n\t"
                    "ldr %[x1], [%[t1], %[c]]\n\t"
                    "pkhbt %[t1], %[x0], %[x1], lsl #16\n\t" /* x0[0] x0[1] x1[0] x1[1] */
                    "pkhtb %[x1], %[x1], %[x0], asr #16\n\t" /* x0[2] x0[3] x1[2] x1[3] */
                    "sxtb16 %[x0], %[wa]\n\t"
                    "sxtb16 %[t0], %[t1]\n\t"
                    "smlad %[a0], %[x0], %[t0], %[a0]\n\t"
                    "sxtb16 %[x0], %[wa], ror #8\n\t"
                    "sxtb16 %[t0], %[t1], ror #8\n\t"
                    "smlad %[a1], %[x0], %[t0], %[a1]\n\t"
                    "sxtb16 %[x0], %[wb]\n\t"
                    "sxtb16 %[t0], %[x1]\n\t"
                    "smlad %[a2], %[x0], %[t0], %[a2]\n\t"
                    "sxtb16 %[x0], %[wb], ror #8\n\t"
                    "sxtb16 %[t0], %[x1], ror #8\n\t"
                    "smlad %[a3], %[x0], %[t0], %[a3]\n\t"
                    "subs %[n], %[n], #1\n\t"
                    "bne 1b"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w),
                      [tp] "+r"(tp), [n] "+r"(n), [wa] "=&r"(wa), [wb] "=&r"(wb),
                      [t0] "=&r"(t0), [t1] "=&r"(t1), [x0] "=&r"(x0), [x1] "=&r"(x1)
                    : [c] "r"(c)
                    : "cc", "memory");
                if (taps % 2) { /* the last tap: one word of 4 channels, SMLABB/SMLATT */
                    const uint32_t x = (uint32_t)read_s8x4(tp[0] + c), v = (uint32_t)read_s8x4(w);
                    const int32_t xe = __sxtb16(x), xo = sxtb16_ror8(x);
                    const int32_t ve = __sxtb16(v), vo = sxtb16_ror8(v);
                    w += 4;
                    a0 = __smlabb(ve, xe, a0);
                    a1 = __smlabb(vo, xo, a1);
                    a2 = __smlatt(ve, xe, a2);
                    a3 = __smlatt(vo, xo, a3);
                }
                accs[c] = a0, accs[c + 1] = a1, accs[c + 2] = a2, accs[c + 3] = a3;
            }
            /* requantize the pixel in one pass: few live values, so nothing spills */
            int8_t *o = out + ((uint32_t)oy * p->out_w + (uint32_t)ox) * c_n;
            if (fast) {
                requant_run(accs, mult, shift, c_n, lo, hi, o);
            } else {
                for (uint32_t c = 0; c < c_n; c++) {
                    o[c] = requant(accs[c], mult[c], shift[c], lo, hi);
                }
            }
        }
    }
}

/* Dense convolution (groups == 1): im2col of two pixels, then SMLAD. Weight rows are padded
 * to a multiple of 4 (the generator does it for DSP targets). */
static void conv_dsp(const edgec_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
    const uint32_t k = ((uint32_t)p->k_h * p->k_w * p->in_c + 3u) & ~3u;
    const uint32_t pixels = (uint32_t)p->out_h * p->out_w;
    /* locals: the int8 stores below could alias *p, which GCC would then reload per store */
    const int32_t *bias = p->bias, *mult = p->mult, *shift = p->shift;
    const int8_t lo = p->lo, hi = p->hi;
    int8_t *field = (int8_t *)(scratch + 2 * k); /* int8 rows for im2col_any: k bytes */
    int32_t *acc0 = (int32_t *)(void *)(field + (p->in_c % 4 ? k : 0)), *acc1 = acc0 + p->out_c;
    /* with pairs (the generator checked shifts and clamp), bias, mult and shift are only
     * there for an odd last channel */
    const int kind = p->pairs ? clamp_kind(lo, hi) : CLAMP_ANY;
    const int fast = kind != CLAMP_ANY || one_word_shifts(shift, p->out_c);
    const uint32_t pairs = p->out_c / 2;
    for (uint32_t px = 0; px < pixels; px += 2) {
        const int two = px + 1 < pixels;
        const uint32_t second = two ? px + 1 : px; /* an odd last pixel pairs with itself */
        im2col(p, in, (int)(px / p->out_w), (int)(px % p->out_w), scratch, field);
        im2col(p, in, (int)(second / p->out_w), (int)(second % p->out_w), scratch + 4, field);
        int8_t *o0 = out + px * p->out_c, *o1 = two ? o0 + p->out_c : o0;
        if (kind != CLAMP_ANY) { /* requantized in registers, pair by pair */
            if (p->w16) { /* the generator widens only layers of an even out_c */
                dot_2x2_sat16(p->w16, scratch, k, p->pairs, o0, o1 - o0, pairs, kind);
                continue;
            }
            if (pairs > 0) {
                dot_2x2_sat(p->w, scratch, k, p->pairs, o0, o1 - o0, pairs, kind);
            }
            if (p->out_c % 2) {
                const uint32_t oc = p->out_c - 1;
                const int8_t *w = p->w + oc * k;
                o0[oc] = requant(dot_1x1(w, scratch, k, 8, bias[oc]), mult[oc], shift[oc], lo,
                                 hi);
                o1[oc] = requant(dot_1x1(w, scratch + 4, k, 8, bias[oc]), mult[oc], shift[oc],
                                 lo, hi);
            }
            continue;
        }
        if (pairs > 0) { /* each pair's rows interleaved */
            dot_2x2_acc(p->w, scratch, k, bias, acc0, acc1, pairs);
        }
        for (uint32_t oc = 2 * pairs; oc < p->out_c; oc++) {
            const int8_t *w = p->w + oc * k;
            acc0[oc] = dot_1x1(w, scratch, k, 8, bias[oc]);
            acc1[oc] = dot_1x1(w, scratch + 4, k, 8, bias[oc]);
        }
        /* requantize the pair of pixels in passes with few live values: nothing spills */
        for (int i = 0; i <= two; i++) {
            const int32_t *acc = i ? acc1 : acc0;
            int8_t *o = i ? o1 : o0;
            if (fast) {
                requant_run(acc, mult, shift, p->out_c, lo, hi, o);
            } else {
                for (uint32_t c = 0; c < p->out_c; c++) {
                    o[c] = requant(acc[c], mult[c], shift[c], lo, hi);
                }
            }
        }
    }
}
#endif

/* Depthwise convolution (groups == in_c == out_c), weights laid out k_h x k_w x C by the
 * generator: per output pixel, every tap adds a contiguous run of channels into int32
 * accumulators (the scratch buffer), so bounds are checked per tap, not per MAC. */
__attribute__((optimize("O2"))) static void depthwise(const edgec_conv_t *p, const int8_t *in,
                                                     int8_t *out, int32_t *acc)
{
    const uint32_t c_n = p->out_c;
    for (int oy = 0; oy < p->out_h; oy++) {
        for (int ox = 0; ox < p->out_w; ox++) {
            for (uint32_t c = 0; c < c_n; c++) {
                acc[c] = p->bias[c];
            }
            for (int ky = 0; ky < p->k_h; ky++) {
                int iy = oy * p->s_h - p->p_t + ky * p->d_h;
                if (iy < 0 || iy >= p->in_h) {
                    continue;
                }
                for (int kx = 0; kx < p->k_w; kx++) {
                    int ix = ox * p->s_w - p->p_l + kx * p->d_w;
                    if (ix < 0 || ix >= p->in_w) {
                        continue;
                    }
                    const int8_t *x = in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * c_n;
                    const int8_t *w = p->w + ((uint32_t)ky * p->k_w + (uint32_t)kx) * c_n;
                    for (uint32_t c = 0; c < c_n; c++) {
                        acc[c] += (int32_t)x[c] * w[c];
                    }
                }
            }
            int8_t *o = out + ((uint32_t)oy * p->out_w + (uint32_t)ox) * c_n;
            for (uint32_t c = 0; c < c_n; c++) {
                o[c] = requant(acc[c], p->mult[c], p->shift[c], p->lo, p->hi);
            }
        }
    }
}

/* Any convolution, grouped and depthwise included: direct loops, portable C. */
static void conv_direct(const edgec_conv_t *p, const int8_t *in, int8_t *out)
{
    const int cin = p->in_c / p->groups, cout = p->out_c / p->groups;
    for (int oy = 0; oy < p->out_h; oy++) {
        for (int ox = 0; ox < p->out_w; ox++) {
            int8_t *o = out + ((uint32_t)oy * p->out_w + (uint32_t)ox) * p->out_c;
            for (int oc = 0; oc < p->out_c; oc++) {
                const int g = oc / cout;
                const int8_t *w = p->w + (uint32_t)oc * p->k_h * p->k_w * cin;
                int32_t acc = p->bias[oc];
                for (int ky = 0; ky < p->k_h; ky++) {
                    int iy = oy * p->s_h - p->p_t + ky * p->d_h;
                    for (int kx = 0; kx < p->k_w; kx++, w += cin) {
                        int ix = ox * p->s_w - p->p_l + kx * p->d_w;
                        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int8_t *x =
                            in + ((uint32_t)iy * p->in_w + (uint32_t)ix) * p->in_c + g * cin;
                        for (int c = 0; c < cin; c++) {
                            acc += (int32_t)x[c] * w[c];
                        }
                    }
                }
                o[oc] = requant(acc, p->mult[oc], p->shift[oc], p->lo, p->hi);
            }
        }
    }
}

void edgec_depthwise_s8(const edgec_conv_t *p, const int8_t *in, int8_t *out,
                        int16_t *scratch)
{
#if EDGEC_DSP
    if (p->k_h == 3 && p->k_w == 3 && p->d_h == 1 && p->d_w == 1) { /* as the generator */
        depthwise_3x3_dsp(p, in, out, scratch);
        return;
    }
    if (p->out_c % 4 == 0) {
        depthwise_dsp(p, in, out, scratch);
        return;
    }
#endif
    depthwise(p, in, out, (int32_t *)(void *)scratch);
}

void edgec_conv_s8(const edgec_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
#if EDGEC_DSP
    if (p->groups == 1) {
        conv_dsp(p, in, out, scratch);
        return;
    }
#endif
    (void)scratch;
    conv_direct(p, in, out);
}

void edgec_dense_s8(const edgec_dense_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
#if EDGEC_DSP
    if (p->in_n % 4 == 0) {
        for (uint32_t i = 0; i < p->in_n; i += 4) {
            expand4(in + i, scratch + i);
        }
        const int32_t *bias = p->bias, *mult = p->mult, *shift = p->shift;
        const int8_t lo = p->lo, hi = p->hi;
        uint32_t o = 0;
        for (; o + 3 < p->out_n; o += 4) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
            dot_4rows(p->w + o * p->in_n, scratch, p->in_n, acc); /* 4 rows, interleaved */
            for (uint32_t i = 0; i < 4; i++) {
                out[o + i] = requant(acc[i], mult[o + i], shift[o + i], lo, hi);
            }
        }
        for (; o < p->out_n; o++) {
            int32_t acc = dot_1x1(p->w + o * p->in_n, scratch, p->in_n, 4, bias[o]);
            out[o] = requant(acc, mult[o], shift[o], lo, hi);
        }
        return;
    }
#endif
    (void)scratch;
    for (uint32_t o = 0; o < p->out_n; o++) {
        const int8_t *w = p->w + o * p->in_n;
        int32_t acc = p->bias[o];
        for (uint32_t i = 0; i < p->in_n; i++) {
            acc += (int32_t)in[i] * w[i];
        }
        out[o] = requant(acc, p->mult[o], p->shift[o], p->lo, p->hi);
    }
}

void edgec_add_s8(const edgec_add_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t ma = p->mult_a, mb = p->mult_b, shift = p->shift, lo = p->lo, hi = p->hi;
    if (shift > 32 && shift < 64) {
        /* as in requant: the rounding term is a multiple of 2^32, so the high word of the
         * 64-bit sum (SMULL, SMLAL) suffices; |a * ma + b * mb| < 2^40 */
        const int32_t round = 1 << (shift - 33), k = shift - 32;
        for (uint32_t i = 0, n = p->size; i < n; i++) {
            const int64_t v = (int64_t)a[i] * ma + (int64_t)b[i] * mb;
            const int32_t r = ((int32_t)(v >> 32) + round) >> k;
            out[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r);
        }
        return;
    }
    const int64_t rounding = (int64_t)1 << (p->shift - 1);
    if (shift >= 8 && shift < 32) {
        /* the usual case (multipliers near 1): |sum| < 2^39, so the shifted result fits 32
         * bits and is the two words' bits shift .. shift + 31: no 64-bit shift */
        for (uint32_t i = 0, n = p->size; i < n; i++) {
            const int64_t v = (int64_t)a[i] * ma + (int64_t)b[i] * mb + rounding;
            const uint32_t low = (uint32_t)v, high = (uint32_t)((uint64_t)v >> 32);
            const int32_t r = (int32_t)((high << (32 - shift)) | (low >> shift));
            out[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r);
        }
        return;
    }
    for (uint32_t i = 0; i < p->size; i++) {
        int64_t v = ((int64_t)a[i] * p->mult_a + (int64_t)b[i] * p->mult_b + rounding) >> p->shift;
        out[i] = (int8_t)(v < p->lo ? p->lo : v > p->hi ? p->hi : v);
    }
}

#if EDGEC_DSP
/* SXTAB16 of the word rotated by 8: adds its odd bytes to a's halves. */
static inline int32_t sxtab16_ror8(int32_t a, uint32_t v)
{
    int32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

/* Four channels at a time, summed in 16-bit halves by SXTAB16: exact while pixels * 128 fits
 * 15 bits, which the caller checks. */
__attribute__((noinline, optimize("O2"))) static void global_sum4(const int8_t *in,
                                                                  uint32_t pixels, uint32_t c_n,
                                                                  int32_t sums[4])
{
    int32_t even = 0, odd = 0;
    for (; pixels > 0; pixels--, in += c_n) {
        const uint32_t v = (uint32_t)read_s8x4(in);
        even = __sxtab16(even, v);
        odd = sxtab16_ror8(odd, v);
    }
    sums[0] = (int16_t)even, sums[1] = (int16_t)odd;
    sums[2] = even >> 16, sums[3] = odd >> 16;
}
#endif

void edgec_global_avgpool_s8(const edgec_avgpool_t *p, const int8_t *in, int8_t *out)
{
    const uint32_t pixels = (uint32_t)p->in_h * p->in_w;
#if EDGEC_DSP
    if (p->c % 4 == 0 && pixels < 256) {
        for (uint32_t c = 0; c < p->c; c += 4) {
            int32_t sums[4];
            global_sum4(in + c, pixels, p->c, sums);
            for (uint32_t i = 0; i < 4; i++) {
                out[c + i] = requant(sums[i], p->mult, p->shift, p->lo, p->hi);
            }
        }
        return;
    }
#endif
    for (uint32_t c = 0; c < p->c; c++) {
        int32_t sum = 0;
        for (uint32_t i = 0; i < pixels; i++) {
            sum += in[i * p->c + c];
        }
        out[c] = requant(sum, p->mult, p->shift, p->lo, p->hi);
    }
}

void edgec_maxpool_s8(const edgec_maxpool_t *p, const int8_t *in, int8_t *out)
{
    for (int oy = 0; oy < p->out_h; oy++) {
        for (int ox = 0; ox < p->out_w; ox++) {
            for (int c = 0; c < p->c; c++) {
                int8_t best = -128; /* padding never wins: it is the smallest int8 */
                for (int ky = 0; ky < p->k_h; ky++) {
                    int iy = oy * p->s_h - p->p_t + ky;
                    for (int kx = 0; kx < p->k_w; kx++) {
                        int ix = ox * p->s_w - p->p_l + kx;
                        if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                            int8_t v = in[((uint32_t)iy * p->in_w + (uint32_t)ix) * p->c + c];
                            best = v > best ? v : best;
                        }
                    }
                }
                out[((uint32_t)oy * p->out_w + (uint32_t)ox) * p->c + c] = best;
            }
        }
    }
}

void edgec_avgpool_s8(const edgec_avgpool_window_t *p, const int8_t *in, int8_t *out)
{
    const edgec_maxpool_t *g = &p->window;
    for (int oy = 0; oy < g->out_h; oy++) {
        for (int ox = 0; ox < g->out_w; ox++) {
            for (int c = 0; c < g->c; c++) {
                int32_t sum = 0;
                for (int ky = 0; ky < g->k_h; ky++) {
                    int iy = oy * g->s_h - g->p_t + ky;
                    for (int kx = 0; kx < g->k_w; kx++) {
                        int ix = ox * g->s_w - g->p_l + kx;
                        if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                            sum += in[((uint32_t)iy * g->in_w + (uint32_t)ix) * g->c + c];
                        }
                    }
                }
                out[((uint32_t)oy * g->out_w + (uint32_t)ox) * g->c + c] =
                    requant(sum, p->mult, p->shift, -128, 127);
            }
        }
    }
}

void edgec_concat_s8(const edgec_concat_t *p, const int8_t *const *ins, int8_t *out)
{
    const int64_t rounding = (int64_t)1 << (p->shift - 1);
    for (uint32_t px = 0; px < p->pixels; px++) {
        for (uint32_t i = 0; i < p->inputs; i++) {
            const uint32_t n = p->channels[i];
            const int8_t *x = ins[i] + px * n;
            for (uint32_t c = 0; c < n; c++) {
                int64_t v = ((int64_t)x[c] * p->mult[i] + rounding) >> p->shift;
                *out++ = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            }
        }
    }
}

void edgec_softmax_s8(const edgec_softmax_t *p, const int8_t *in, int8_t *out)
{
    for (uint32_t r = 0; r < p->rows; r++, in += p->n, out += p->n) {
        int8_t top = -128;
        for (uint32_t i = 0; i < p->n; i++) {
            top = in[i] > top ? in[i] : top;
        }
        int64_t total = 0;
        for (uint32_t i = 0; i < p->n; i++) {
            total += p->table[top - in[i]];
        }
        for (uint32_t i = 0; i < p->n; i++) {
            int64_t e = p->table[top - in[i]];
            int64_t v = (254 * e + total) / (2 * total); /* round half up, all non-negative */
            out[i] = (int8_t)(v > 127 ? 127 : v);
        }
    }
}
