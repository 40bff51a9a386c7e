/* example.c: open a bundle's model through edgec_model.h, fill its inputs, run it and print its
 * outputs (part of the edgec toolchain; docs/c-api.md). In the bundle directory:
 *   cc example.c -I. -L. -ledgec_model -Wl,-rpath,'$ORIGIN' -o example && ./example .     */
#include <stdio.h>
#include <stdlib.h>

#include "edgec_model.h"

int main(int argc, char** argv) {
  edgec_model* model = edgec_model_open(argc > 1 ? argv[1] : ".");
  if (model == NULL) return fprintf(stderr, "error: %s\n", edgec_last_error()), 1;
  int n_in = edgec_model_num_inputs(model), n_out = edgec_model_num_outputs(model);
  void** in = calloc(n_in, sizeof(void*));
  void** out = calloc(n_out, sizeof(void*));
  for (int i = 0; i < n_in; ++i) {
    const edgec_tensor_info* t = edgec_model_input(model, i);
    float* x = in[i] = malloc(t->bytes);
    if (t->dtype != EDGEC_FLOAT32) return fprintf(stderr, "error: input %d is not float32\n", i), 1;
    for (size_t k = 0; k < t->bytes / sizeof(float); ++k) x[k] = (float)(k % 17) / 8.0f - 1.0f;
  }
  for (int i = 0; i < n_out; ++i) out[i] = malloc(edgec_model_output(model, i)->bytes);
  if (edgec_model_run(model, (const void* const*)in, out) != 0) {
    return fprintf(stderr, "error: %s\n", edgec_last_error()), 1;
  }
  for (int i = 0; i < n_out; ++i) {
    const edgec_tensor_info* t = edgec_model_output(model, i);
    printf("output %d: %s, %zu bytes:", i, edgec_dtype_name(t->dtype), t->bytes);
    for (size_t k = 0; t->dtype == EDGEC_FLOAT32 && k < t->bytes / sizeof(float); ++k) {
      printf(" %.9g", ((const float*)out[i])[k]);
    }
    printf("\n");
  }
  edgec_model_close(model);
  return 0;
}
