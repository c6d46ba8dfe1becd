//! Which CPU GEMM kiln should use: the `gemm` crate (kiln's choice since it gained AVX-512 on stable
//! Rust; here on rayon's threads) against `matrixmultiply` (single-threaded), and kiln's CPU matmul
//! (`gemm` single-threaded per block, the blocks spread over rayon's workers, behind the tensor
//! API), on square f32 matrices. Reported as GFLOP/s ("Gelem/s").
//!
//! `cargo bench --bench cpu_matmul`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::prelude::*;

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_matmul");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    let threads = rayon::current_num_threads();
    for n in [128usize, 256, 512, 1024, 2048] {
        let (a, b) = (values(n * n), values(n * n));
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        let cpu = Device::cpu();
        let (ta, tb) = (
            RawTensor::from_slice(&a, [n, n], &cpu).unwrap(),
            RawTensor::from_slice(&b, [n, n], &cpu).unwrap(),
        );
        group.bench_function(BenchmarkId::new("kiln", n), |bench| {
            bench.iter(|| ta.matmul(&tb).unwrap())
        });
        group.bench_function(BenchmarkId::new("gemm", n), |bench| {
            bench.iter(|| unsafe {
                gemm::gemm(
                    n,
                    n,
                    n,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    n as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            })
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", n), |bench| {
            bench.iter(|| unsafe {
                matrixmultiply::sgemm(
                    n,
                    n,
                    n,
                    1.0,
                    a.as_ptr(),
                    n as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
