//! Spool append with group commit: N concurrent appenders share each fsync, so the cost
//! per record falls as the batch grows. Both durability modes; the disk is this machine's.
//! `spool_append_steady` is a spool in the steady state of a long run: retention deletes a
//! segment at every roll, so new segments are recycled ones written over (fsync only, to
//! compare with the empty spool of `spool_append/Fsync`).

use bytes::Bytes;
use callhook::spool::{Durability, NewRecord, Spool, SpoolConfig};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn record() -> NewRecord {
    NewRecord {
        kind: 3,
        is_query: false,
        received_us: 0,
        key: Bytes::from_static(b"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"),
        app: Bytes::new(),
        etype: Bytes::from_static(b"completed"),
        meta: Bytes::new(),
        body: Bytes::from(vec![b'x'; 450]),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runs = [
        (Durability::Fsync, false),
        (Durability::Os, false),
        (Durability::Fsync, true),
    ];
    for (durability, steady) in runs {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            dir: dir.path().to_path_buf(),
            durability,
            // Steady: small segments and retention, filled past it before measuring.
            segment_bytes: if steady { 4 << 20 } else { 64 << 20 },
            disk_budget_bytes: 64 << 30,
            retention_age: None,
            retention_bytes: Some(if steady { 12 << 20 } else { 256 << 20 }),
            queue_capacity: 65_536,
            queue_bytes: 64 << 20,
            has_sink: false,
        };
        let (spool, _) = rt.block_on(async { Spool::open(cfg) }).unwrap();
        if steady {
            rt.block_on(append_all(&spool, records(48_000)));
        }
        let name = if steady {
            "spool_append_steady".to_owned()
        } else {
            format!("spool_append/{durability:?}")
        };
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        for batch in [1usize, 8, 64, 256] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("batch_{batch}"), |b| {
                b.iter_batched(
                    || records(batch),
                    |recs| rt.block_on(append_all(&spool, recs)),
                    BatchSize::SmallInput,
                );
            });
        }
        g.finish();
        rt.block_on(spool.shutdown());
    }
}

fn records(n: usize) -> Vec<NewRecord> {
    (0..n).map(|_| record()).collect()
}

/// The records appended concurrently, all awaited.
async fn append_all(spool: &Spool, recs: Vec<NewRecord>) {
    let tasks: Vec<_> = recs
        .into_iter()
        .map(|r| {
            let s = spool.clone();
            tokio::spawn(async move { s.append(r).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
