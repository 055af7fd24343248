int peak_fma_width(void);
double peak_fma_flops_per_iteration(void);
double peak_fma_gflops(int threads, long long iterations, double *checksum);
