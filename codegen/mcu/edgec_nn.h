/* edgec_nn: the int8 kernels edgec's generated models call (C99, no malloc, no stdio).
 *
 * Tensors are NHWC int8 with one scale each (zero point 0); weights are int8, one scale per
 * output channel, laid out OHWI (depthwise: O = channels, I = 1); biases are int32.
 * Requantization is edgec's fixed-point rule, the same as its numpy reference and its TVM
 * builds, so outputs agree bit for bit:
 *     out = clamp((acc * mult + 2^(shift - 1)) >> shift, lo, hi)   (64-bit, arithmetic shift)
 * with mult in [2^30, 2^31): the Q31 multiplier of CMSIS-NN, with a single rounding.
 * Built with __ARM_FEATURE_DSP (Cortex-M4/M7/M33), convolutions, depthwise ones and dense layers
 * use SMLAD on sign-extended pairs (SXTB16), and the generator lays their weights out for it:
 * conv rows (k_h * k_w * in_c) zero-padded to a multiple of 4 and interleaved by pairs of
 * output channels (1x1 and 1-3 channel layers: widened to int16 as well, see w16); dense rows (in_n a multiple of 4) interleaved by runs of 4; undilated 3x3
 * depthwise weights C x 9, each 3x3 transposed where the layer runs transposed (see
 * depthwise_3x3_dsp in edgec_nn.c, and _plane in the generator for the rule), other depthwise
 * weights (out_c a multiple of 4) by groups of 4 channels and pairs of taps (depthwise_dsp).
 * Otherwise portable C, weights as described below.
 */
#ifndef EDGEC_NN_H
#define EDGEC_NN_H

#include <stdint.h>

typedef struct {
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c;
    uint8_t k_h, k_w, s_h, s_w, p_t, p_l, d_h, d_w;
    uint16_t groups;
    int8_t lo, hi;
    const int8_t *w;       /* OHWI: out_c x k_h x k_w x (in_c / groups); depthwise
                              (groups == in_c == out_c): k_h x k_w x out_c */
    const int32_t *bias;   /* out_c (0 where pairs holds them all) */
    const int32_t *mult;   /* out_c (idem) */
    const int32_t *shift;  /* out_c (idem) */
    const int32_t *pairs;  /* DSP builds of dense convolutions whose shifts are in (32, 64) and
                              whose clamp is [-128, 127] or [0, 127], else 0: per pair of output
                              channels {bias0, bias1, mult0, mult1, shift0 - 33, shift1 - 33};
                              with an even out_c, bias, mult and shift are then 0 */
    const int16_t *w16;    /* DSP builds, 1x1 and 1-3 channel convolutions with pairs and an
                              even out_c: w widened to int16 at build time (each group of 4 in
                              SXTB16 order x0 x2 x1 x3), 12 instead of 15 instructions per 16
                              MACs for twice the flash; w is then 0. Else 0 */
} edgec_conv_t;

typedef struct {
    uint16_t in_n, out_n;
    int8_t lo, hi;
    const int8_t *w;       /* out_n x in_n */
    const int32_t *bias, *mult, *shift;
} edgec_dense_t;

typedef struct {
    uint32_t size;
    int32_t mult_a, mult_b, shift;
    int8_t lo, hi;
} edgec_add_t;

typedef struct {
    uint16_t in_h, in_w, c;
    int32_t mult, shift;
    int8_t lo, hi;
} edgec_avgpool_t;

typedef struct {
    uint16_t in_h, in_w, c, out_h, out_w;
    uint8_t k_h, k_w, s_h, s_w, p_t, p_l;
} edgec_maxpool_t;

typedef struct {
    edgec_maxpool_t window; /* the same geometry; padding counts as zeros */
    int32_t mult, shift;    /* 1 / (k_h * k_w) and the scales, fixed point */
} edgec_avgpool_window_t;

typedef struct {
    uint16_t pixels;         /* out_h * out_w (1 for flat tensors) */
    uint16_t inputs;
    const uint16_t *channels; /* per input */
    const int32_t *mult;      /* per input: its scale over the output's, fixed point */
    int32_t shift;
} edgec_concat_t;

typedef struct {
    uint16_t rows, n;
    const int32_t *table; /* exp(-d * scale) * 2^16 for d = max - x in 0..255 */
} edgec_softmax_t;

/* scratch (4-byte aligned): int16 room for two im2col columns (2 * k_h * k_w * in_c, rounded
 * up to 4, plus as many bytes when in_c is not a multiple of 4) and two pixels' int32
 * accumulators (2 * out_c) on DSP builds, and for
 * depthwise layers int32 accumulators (out_c), on DSP builds followed by k_h * k_w + 1 tap
 * pointers and out_c zero bytes; undilated 3x3 depthwise layers on DSP builds instead take an
 * int16 plane of the input with its padding and a spare column, plane_h rows of 64 elements
 * (two channels side by side when 32 fit, see DW_PITCH in edgec_nn.c) or, wider than 64 either
 * way round, of plane_w. */
/* convolutions, grouped ones included, but not depthwise ones */
void edgec_conv_s8(const edgec_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* depthwise convolutions (groups == in_c == out_c > 1): their own entry point, so that a model
 * without them links none of their kernels */
void edgec_depthwise_s8(const edgec_conv_t *p, const int8_t *in, int8_t *out,
                        int16_t *scratch);
void edgec_dense_s8(const edgec_dense_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
void edgec_add_s8(const edgec_add_t *p, const int8_t *a, const int8_t *b, int8_t *out);
void edgec_global_avgpool_s8(const edgec_avgpool_t *p, const int8_t *in, int8_t *out);
void edgec_maxpool_s8(const edgec_maxpool_t *p, const int8_t *in, int8_t *out);
void edgec_avgpool_s8(const edgec_avgpool_window_t *p, const int8_t *in, int8_t *out);
/* ins: one pointer per input; out may not alias them */
void edgec_concat_s8(const edgec_concat_t *p, const int8_t *const *ins, int8_t *out);
/* output scale 1/127: out = round(127 * e / sum(e)) */
void edgec_softmax_s8(const edgec_softmax_t *p, const int8_t *in, int8_t *out);

#endif
