/* capi_probe.c: drives edgec_model.h for tests/integration/test_c_api.py.
 *   capi_probe CASE [MODEL]   (no MODEL: the model linked into this program, a system library)
 * Prints what the API answered; exits 0 whatever it answered (a crash or abort is the failure). */
#define _POSIX_C_SOURCE 200809L /* opendir */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec_model.h"

/* The answer first, then the message: C leaves the order of a call's arguments open. */
static void answered(long rc) { printf("%ld: %s\n", rc, edgec_last_error()); }
static void answered_ptr(const void* p) {
  printf("%s: %s\n", p ? "set" : "NULL", edgec_last_error());
}

static void print_info(const char* kind, const edgec_tensor_info* t) {
  printf("%s %s", kind, edgec_dtype_name(t->dtype));
  for (int d = 0; d < t->rank; ++d) printf(" %lld", (long long)t->dims[d]);
  printf(" bytes=%zu\n", t->bytes);
}

/* Each thread of this process and the CPUs it may run on (its Cpus_allowed_list). */
static void print_threads(void) {
  DIR* tasks = opendir("/proc/self/task");
  for (struct dirent* e; tasks && (e = readdir(tasks)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char path[300], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    FILE* f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
      if (strncmp(line, "Cpus_allowed_list:", 18) == 0) printf("thread %s", line + 18);
    }
    if (f) fclose(f);
  }
  if (tasks) closedir(tasks);
}

int main(int argc, char** argv) {
  const char* how = argc > 1 ? argv[1] : "";
  edgec_model* m = argc > 2 ? edgec_model_open(argv[2]) : edgec_model_open_system();
  if (m == NULL) return printf("open failed: %s\n", edgec_last_error()), 0;
  int n_in = edgec_model_num_inputs(m), n_out = edgec_model_num_outputs(m);
  const edgec_tensor_info* in0 = edgec_model_input(m, 0);
  char* buf = malloc(in0->bytes + 1);
  memset(buf, 0, in0->bytes + 1);
  if (strcmp(how, "describe") == 0) {
    for (int i = 0; i < n_in; ++i) print_info("in", edgec_model_input(m, i));
    for (int i = 0; i < n_out; ++i) print_info("out", edgec_model_output(m, i));
  } else if (strcmp(how, "short-input") == 0) {
    answered(edgec_model_set_input(m, 0, buf, in0->bytes - 1));
  } else if (strcmp(how, "long-input") == 0) {
    answered(edgec_model_set_input(m, 0, buf, in0->bytes + 1));
  } else if (strcmp(how, "null-input") == 0) {
    answered(edgec_model_set_input(m, 0, NULL, in0->bytes));
  } else if (strcmp(how, "no-such-input") == 0) {
    answered_ptr(edgec_model_input(m, n_in));
  } else if (strcmp(how, "no-such-output") == 0) {
    answered_ptr(edgec_model_output(m, -1));
  } else if (strcmp(how, "output-before-run") == 0) {
    const edgec_tensor_info* out0 = edgec_model_output(m, 0);
    void* y = malloc(out0->bytes);
    answered(edgec_model_get_output(m, 0, y, out0->bytes));
    free(y);
  } else if (strcmp(how, "threads") == 0) { /* after a run: the runtime's threads exist */
    if (edgec_model_invoke(m) != 0) return printf("run failed: %s\n", edgec_last_error()), 0;
    print_threads();
  } else if (strcmp(how, "run") == 0) { /* example.c's inputs, outputs printed the same way */
    float* x = (float*)buf;
    for (size_t k = 0; k < in0->bytes / sizeof(float); ++k) x[k] = (float)(k % 17) / 8.0f - 1.0f;
    if (edgec_model_set_input(m, 0, x, in0->bytes) != 0 || edgec_model_invoke(m) != 0) {
      return printf("run failed: %s\n", edgec_last_error()), 0;
    }
    for (int i = 0; i < n_out; ++i) {
      const edgec_tensor_info* t = edgec_model_output(m, i);
      float* y = malloc(t->bytes);
      edgec_model_get_output(m, i, y, t->bytes);
      printf("output %d: %s, %zu bytes:", i, edgec_dtype_name(t->dtype), t->bytes);
      for (size_t k = 0; k < t->bytes / sizeof(float); ++k) printf(" %.9g", y[k]);
      printf("\n");
      free(y);
    }
  }
  free(buf);
  edgec_model_close(m);
  return 0;
}
