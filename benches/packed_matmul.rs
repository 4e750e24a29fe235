//! Criterion benchmarks of the packed (quantized) matmul kernels on one
//! thread: SmolLM2's `[1536, 576]` MLP projection in int4 and its output
//! layer's shape in int8, for the row counts of batch-1 decode, batch-8
//! decode and RL sampling (32 rows). Throughput is in multiply-adds
//! ("elements") per second. `one` multiplies one matrix over and over (its
//! codes stay in the L2 cache: the kernel's arithmetic); `stream` cycles
//! through 64 of them (28 MB of int4 codes: reading weights from memory, as
//! a decode step does). Compare kernels by running it twice:
//! `EMORL_AMX=0 cargo bench --bench packed_matmul` (AVX-512 VNNI only) and
//! `cargo bench --bench packed_matmul` (AMX from 16 rows where the CPU has it).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emorl_lm::qmatmul::QuantMatrix;
use std::hint::black_box;

/// Deterministic values in [-0.5, 0.5).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let (n, k) = (1536, 576);
    let mats: Vec<QuantMatrix> = (0..64)
        .map(|i| QuantMatrix::int4(&values(i, n * k), n, k).expect("int4 weights"))
        .collect();
    let head_n = 49152;
    let head = QuantMatrix::int8(&values(99, head_n * k), head_n, k).expect("int8 weights");
    let mut group = c.benchmark_group("packed-matmul");
    let mut out = Vec::new();
    for rows in [1usize, 8, 32] {
        let x = values(7, rows * k);
        group.throughput(Throughput::Elements((rows * n * k) as u64));
        group.bench_function(format!("int4-1536x576/one/rows={rows}"), |b| {
            b.iter(|| {
                mats[0]
                    .matmul_threads(&x, rows, &mut out, 1)
                    .expect("matmul");
                black_box(out[0])
            })
        });
        let mut next = 0;
        group.bench_function(format!("int4-1536x576/stream/rows={rows}"), |b| {
            b.iter(|| {
                next = (next + 1) % mats.len();
                mats[next]
                    .matmul_threads(&x, rows, &mut out, 1)
                    .expect("matmul");
                black_box(out[0])
            })
        });
        group.throughput(Throughput::Elements((rows * head_n * k) as u64));
        group.bench_function(format!("int8-49152x576/rows={rows}"), |b| {
            b.iter(|| {
                head.matmul_threads(&x, rows, &mut out, 1).expect("matmul");
                black_box(out[0])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
