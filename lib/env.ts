/**
 * The NMSPARSE_* environment variables the library reads (in lib/, native/ and scripts/), and what each does:
 * the table of docs/design.md §11 and the README. test/env.test.ts checks that the sources read no others.
 */
export const ENVIRONMENT = {
  NMSPARSE_ADDON: 'load this .node file instead of the package build or prebuild',
  NMSPARSE_BUILD_FROM_SOURCE: '1: skip the prebuilds and compile at install',
  NMSPARSE_CPU_ISA: 'avx512, avx2 or scalar: the highest ISA the CPU kernels may use',
  NMSPARSE_CPU_SPMM: 'perm or rows: the AVX-512 N:M product driver for M <= 16 past small batches (default: by CPU vendor)',
  NMSPARSE_OPENBLAS: 'the libopenblas file the CPU benchmark compares against',
  NMSPARSE_CUDA_DEVICE: 'index of the CUDA device to use (default 0)',
  NMSPARSE_CUDA_LIBS: 'a directory searched first for cuSPARSELt and cuBLASLt',
  NMSPARSE_ALLOW_CUSPARSELT_MAJOR: 'accept a cuSPARSELt major version this build was not checked against',
  NMSPARSE_CUDA_DISPATCH: 'auto (the faster of sparse and dense per shape), sparse or dense',
  NMSPARSE_CUSPARSELT_SEARCH: '0: no cusparseLtMatmulSearch, the default algorithm',
  NMSPARSE_CUDA_VERIFY: '0: no float64 check of a new plan',
  NMSPARSE_TEST_PLAN_CACHE: 'test-only: reject-winner, reject-all, capacity=N force the GPU plan cache\'s rare branches',
  NMSPARSE_MACHINE: 'the machine name in benchmark result files',
} as const;
