/* edgec_model.h: run a model compiled by edgec from your own C or C++ program (part of the
 * edgec toolchain; see docs/c-api.md).
 *
 *   edgec_model* m = edgec_model_open("bundle-dir");   // or a path to its model.so
 *   if (!m) { fprintf(stderr, "%s\n", edgec_last_error()); return 1; }
 *   const edgec_tensor_info* in = edgec_model_input(m, 0);   // dtype, rank, dims, bytes
 *   ... fill one buffer of in->bytes per input, one of edgec_model_output(m, i)->bytes per output
 *   if (edgec_model_run(m, inputs, outputs) != 0) fprintf(stderr, "%s\n", edgec_last_error());
 *   edgec_model_close(m);
 *
 * Errors: a function that fails returns NULL or -1 and never aborts the process; the reason, one
 * line, is edgec_last_error() in the same thread until that thread's next failing call.
 *
 * Ownership: an edgec_model* is yours from open until edgec_model_close(); everything it hands
 * out (tensor infos, their dims) belongs to it and lives until close. Buffers you pass in stay
 * yours: they are copied from (inputs) or into (outputs) during the call and never kept.
 *
 * Memory: open allocates the model's input tensors and loads its weights. Runs allocate no new
 * tensor memory once the first has run (the runtime's pooled allocator reuses its buffers).
 * On x86-64 Linux, start your program with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc 2.35+)
 * so that malloc backs those buffers with transparent huge pages, as edgec-run does for itself:
 * 5-20% faster inference where TLB misses cost (docs/performance.md, "Huge pages").
 *
 * Threads: one model is used by one thread at a time; distinct models are independent. The
 * runtime's own worker threads follow TVM_NUM_THREADS (read when the first model runs). Opening
 * a model sets TVM_BIND_THREADS=0 unless it is set: pinned to cores, TVM's threads stall on any
 * other busy process (docs/performance.md, "Threads pinned to cores").
 *
 * Linking: libedgec_model.so (or libedgec_model.a) with libtvm_ffi.so and libtvm_runtime.so,
 * all shipped in the bundle. A program with the model linked in as a system library (the
 * objects of relax.build(..., system_lib=True)) opens it with edgec_model_open_system().
 */
#ifndef EDGEC_MODEL_H_
#define EDGEC_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct edgec_model edgec_model; /* opaque */

typedef enum edgec_dtype {
  EDGEC_FLOAT32 = 0,
  EDGEC_FLOAT16 = 1,
  EDGEC_FLOAT64 = 2,
  EDGEC_INT8 = 3,
  EDGEC_INT16 = 4,
  EDGEC_INT32 = 5,
  EDGEC_INT64 = 6,
  EDGEC_UINT8 = 7,
  EDGEC_UINT16 = 8,
  EDGEC_UINT32 = 9,
  EDGEC_UINT64 = 10,
  EDGEC_BOOL = 11 /* one byte per element */
} edgec_dtype;

/* Where the model runs. The values are DLPack's device types. */
typedef enum edgec_device {
  EDGEC_DEVICE_CPU = 1,
  EDGEC_DEVICE_CUDA = 2 /* needs TVM's CUDA device API loaded first (libtvm_runtime_cuda.so) */
} edgec_device;

/* One input or output: a dense, row-major array. */
typedef struct edgec_tensor_info {
  edgec_dtype dtype;
  int rank;
  const int64_t* dims; /* rank entries */
  size_t bytes;        /* element size times the product of dims */
} edgec_tensor_info;

/* Opens a model for the CPU: `path` is a bundle directory (its model.so is loaded) or the path
 * of a model library. NULL on failure. */
edgec_model* edgec_model_open(const char* path);

/* As edgec_model_open, on `device` (device 0 of that kind). */
edgec_model* edgec_model_open_device(const char* path, edgec_device device);

/* Opens the model linked into this program as a system library (built with system_lib=True,
 * its objects linked in whole), for the CPU. NULL on failure. */
edgec_model* edgec_model_open_system(void);

int edgec_model_num_inputs(const edgec_model* model);
int edgec_model_num_outputs(const edgec_model* model);

/* The i-th input's or output's info, or NULL if i is out of range. */
const edgec_tensor_info* edgec_model_input(const edgec_model* model, int i);
const edgec_tensor_info* edgec_model_output(const edgec_model* model, int i);

/* Runs the model once: inputs[i] holds edgec_model_input(model, i)->bytes bytes, outputs[i]
 * receives edgec_model_output(model, i)->bytes bytes. 0 on success, -1 on failure. */
int edgec_model_run(edgec_model* model, const void* const* inputs, void* const* outputs);

/* The same in steps, each with its buffer size checked: copy inputs in (they stay set across
 * runs), run, then copy out any outputs of the last run. 0 on success, -1 on failure. */
int edgec_model_set_input(edgec_model* model, int i, const void* data, size_t bytes);
int edgec_model_invoke(edgec_model* model);
int edgec_model_get_output(const edgec_model* model, int i, void* data, size_t bytes);

/* Releases the model and everything it handed out. NULL is allowed. */
void edgec_model_close(edgec_model* model);

/* The message of the last failing call in this thread ("" if none yet); valid until this
 * thread's next failing call. */
const char* edgec_last_error(void);

/* "float32", "int8", ... (numpy's names); "unknown" for a value outside the enum. */
const char* edgec_dtype_name(edgec_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif /* EDGEC_MODEL_H_ */
