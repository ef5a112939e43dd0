/* test_patch_cuda: test_patch.c on the cuda backend: the writes go to the
 * device through to_dev, and a written pass runs op by op. Exit 77
 * (ctest: skipped) when no CUDA device answers. */
#define TP_CUDA 1
#include "test_patch.c"
