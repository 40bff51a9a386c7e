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

/* acc_p[c] = bias[c] + w_c . col_p over k (k a multiple of 4) for `pairs` pairs of channels:
 * 2 channels x 2 pixels share loads, 16 MACs in 8 SMLAD. `w` interleaves the two channels' rows in groups of 4 bytes (the
 * generator lays them out so) and `col` the two pixels' columns in groups of 4 int16 (see
 * im2col), so one doubleword and two doublewords feed 16 MACs. Out of line and at -O2 so its
 * live values stay in registers. */
__attribute__((noinline, optimize("O2"))) static void dot_2x2(const int8_t *w,
                                                               const int16_t *col, uint32_t k,
                                                               const int32_t *bias,
                                                               int32_t *acc0, int32_t *acc1,
                                                               uint32_t pairs)
{
    /* every pair of channels in one call: the rows of consecutive pairs follow each other */
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

/* im2col for channel counts that are not a multiple of 4 (a first layer's 1 or 3 channels):
 * the field's rows (k_w * in_c contiguous bytes each in NHWC) are copied into `field` as
 * int8, zero where padded and up to a multiple of 4, then expanded 4 values at a time. */
static void im2col_any(const edgec_conv_t *p, const int8_t *in, int oy, int ox, int16_t *col,
                       int8_t *field)
{
    const uint32_t c_n = p->in_c, row = (uint32_t)p->k_w * c_n;
    const int ix0 = ox * p->s_w - p->p_l, ix1 = ix0 + (p->k_w - 1) * p->d_w;
    const int dense_row = p->d_w == 1 && ix0 >= 0 && ix1 < p->in_w;
    int8_t *dst = field;
    for (int ky = 0; ky < p->k_h; ky++) {
        const int iy = oy * p->s_h - p->p_t + ky * p->d_h;
        const int row_inside = iy >= 0 && iy < p->in_h;
        if (row_inside && dense_row) { /* the whole row: contiguous in NHWC */
            const int8_t *src = in + ((uint32_t)iy * p->in_w + (uint32_t)ix0) * c_n;
            for (uint32_t i = 0; i < row; i++) {
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
    const int fast = one_word_shifts(shift, p->out_c);
    for (uint32_t px = 0; px < pixels; px += 2) {
        const int two = px + 1 < pixels;
        const uint32_t second = two ? px + 1 : px; /* an odd last pixel pairs with itself */
        im2col(p, in, (int)(px / p->out_w), (int)(px % p->out_w), scratch, field);
        im2col(p, in, (int)(second / p->out_w), (int)(second % p->out_w), scratch + 4, field);
        int8_t *o0 = out + px * p->out_c, *o1 = o0 + p->out_c;
        const uint32_t pairs = p->out_c / 2;
        if (pairs > 0) { /* each pair's rows interleaved */
            dot_2x2(p->w, scratch, k, bias, acc0, acc1, pairs);
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

void edgec_conv_s8(const edgec_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
    if (p->groups == p->in_c && p->groups == p->out_c && p->groups > 1) {
#if EDGEC_DSP
        if (p->out_c % 4 == 0) {
            depthwise_dsp(p, in, out, scratch);
            return;
        }
#endif
        depthwise(p, in, out, (int32_t *)(void *)scratch);
        return;
    }
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

void edgec_global_avgpool_s8(const edgec_avgpool_t *p, const int8_t *in, int8_t *out)
{
    const uint32_t pixels = (uint32_t)p->in_h * p->in_w;
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
