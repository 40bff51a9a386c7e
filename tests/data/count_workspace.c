/* LD_PRELOAD shim for tests: counts TVMBackendAllocWorkspace calls (kernels' scratch buffers
 * from the heap) and writes the count to $WS_COUNT_FILE at exit; forwards to the real one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *(*alloc_fn)(int, int, uint64_t, int, int);
static unsigned long calls;

void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t size, int dtype_code,
                               int dtype_bits) {
  static alloc_fn real;
  if (!real) real = (alloc_fn)dlsym(RTLD_NEXT, "TVMBackendAllocWorkspace");
  __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
  return real(device_type, device_id, size, dtype_code, dtype_bits);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("WS_COUNT_FILE");
  FILE *f = path ? fopen(path, "w") : NULL;
  if (f) {
    fprintf(f, "%lu\n", calls);
    fclose(f);
  }
}
