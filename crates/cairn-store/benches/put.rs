//! Block store throughput, next to what the disk itself does in the same run.
//!
//! ```text
//! cargo bench -p cairn-store --bench put
//! CAIRN_BENCH_MIB=1024 CAIRN_BENCH_DIR=/srv/scratch cargo bench -p cairn-store --bench put
//! ```
//!
//! Writes `CAIRN_BENCH_MIB` (default 512) MiB of distinct 4 MiB blocks per line, into a
//! temp directory under `CAIRN_BENCH_DIR` (default: the system temp dir; put it on the
//! filesystem you care about). Each line is measured once: run it twice and distrust
//! figures that disagree.
//!
//! Reference lines:
//! - `dd`: one file written in 4 MiB pieces and fsynced once at the end, like
//!   `dd bs=4M conv=fsync`: the disk's durable streaming speed.
//! - `fsync per file`: each 4 MiB written to its own file and fsynced, sequentially: the
//!   best a store that acknowledges each block durably can do one block at a time.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_core::BlockHash;
use cairn_store::BlockStore;
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};

const BLOCK: usize = 4 << 20;

fn main() {
    let total_mib: usize = env_or("CAIRN_BENCH_MIB", 512);
    let base_dir: PathBuf = std::env::var_os("CAIRN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let count = (total_mib << 20) / BLOCK;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "{count} blocks of 4 MiB per line, in {}, {} cores",
        base_dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let random = variants(random_block(), count);
    let text = variants(text_block(), count);
    let zeros = variants(Bytes::from(vec![0u8; BLOCK]), count);
    let ratio = |data: &Bytes| {
        zstd::bulk::compress(data, 1).map_or(1.0, |c| data.len() as f64 / c.len() as f64)
    };
    println!(
        "text blocks compress {:.1}x at zstd level 1\n",
        ratio(&text[0].1)
    );

    report(
        "cpu: blake3, one core",
        count,
        cpu(&random, |d| usize::from(blake3::hash(d).as_bytes()[0])),
    );
    report(
        "cpu: zstd -1 on text, one core",
        count,
        cpu(&text, |d| zstd::bulk::compress(d, 1).unwrap().len()),
    );
    disk_references(&base_dir, &random);
    for (name, blocks) in [("random", &random), ("text", &text), ("zeros", &zeros)] {
        for in_flight in [1, 4, 8] {
            let (elapsed, stored) = runtime.block_on(put_all(&base_dir, blocks, in_flight));
            report(
                &format!("put {name}, {in_flight} in flight"),
                count,
                elapsed,
            );
            println!("{:>44} stored {} MiB", "", stored >> 20);
        }
    }
    for (name, blocks) in [("random", &random), ("text", &text)] {
        let elapsed = runtime.block_on(get_all(&base_dir, blocks, 2));
        report(
            &format!("get (page cache) {name}, 2 in flight"),
            count,
            elapsed,
        );
    }
    small_blocks(&runtime, &base_dir);
    // Again at the end: the disk's speed drifts (host caches, other tenants), and a
    // reference taken only at the start can flatter or shame what came after it.
    disk_references(&base_dir, &random);
}

fn disk_references(base: &Path, blocks: &[(BlockHash, Bytes)]) {
    let count = blocks.len();
    report(
        "ref: dd (one file, fsync at end)",
        count,
        dd_reference(base, blocks),
    );
    report(
        "ref: file + fsync per block, sequential",
        count,
        per_file_reference(base, blocks),
    );
}

/// Time for `f` over every block on this thread: the CPU ceiling of one core.
fn cpu(blocks: &[(BlockHash, Bytes)], f: impl Fn(&[u8]) -> usize) -> Duration {
    let start = Instant::now();
    let mut sink = 0usize;
    for (_, data) in blocks {
        sink = sink.wrapping_add(f(data));
    }
    std::hint::black_box(sink);
    start.elapsed()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(what: &str, blocks: usize, elapsed: Duration) {
    let mb = (blocks * BLOCK) as f64 / 1e6;
    println!(
        "{what:<44} {:>7.0} MB/s  ({:.2} s)",
        mb / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

fn random_block() -> Bytes {
    let mut data = vec![0u8; BLOCK];
    StdRng::seed_from_u64(1).fill_bytes(&mut data);
    Bytes::from(data)
}

/// Word salad from a small vocabulary: compresses about like source code or logs.
fn text_block() -> Bytes {
    const WORDS: &[&str] = &[
        "the",
        "block",
        "store",
        "keeps",
        "every",
        "chunk",
        "of",
        "a",
        "file",
        "under",
        "its",
        "hash",
        "and",
        "checks",
        "it",
        "on",
        "read",
        "fn",
        "let",
        "mut",
        "return",
        "Ok(())",
        "error",
        "2024-05-01T12:00:00Z",
        "INFO",
        "request",
        "took",
        "ms",
        "user",
        "id",
        "=",
        "{",
        "}",
        ";",
        "\n",
        "\n    ",
    ];
    let mut rng = StdRng::seed_from_u64(2);
    let mut out = String::with_capacity(BLOCK + 64);
    while out.len() < BLOCK {
        out.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        out.push(' ');
        if rng.gen_ratio(1, 10) {
            out.push_str(&rng.gen::<u32>().to_string());
        }
    }
    out.truncate(BLOCK);
    Bytes::from(out)
}

/// `count` distinct blocks that share all but their first 8 bytes, with their hashes.
/// Computed up front: `put` expects callers to have hashed already.
fn variants(base: Bytes, count: usize) -> Vec<(BlockHash, Bytes)> {
    (0..count)
        .map(|i| {
            let mut data = base.to_vec();
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (BlockHash::of(&data), Bytes::from(data))
        })
        .collect()
}

fn dd_reference(base: &Path, blocks: &[(BlockHash, Bytes)]) -> Duration {
    let dir = tempfile::tempdir_in(base).unwrap();
    let start = Instant::now();
    let mut file = File::create(dir.path().join("dd")).unwrap();
    for (_, data) in blocks {
        file.write_all(data).unwrap();
    }
    file.sync_all().unwrap();
    start.elapsed()
}

fn per_file_reference(base: &Path, blocks: &[(BlockHash, Bytes)]) -> Duration {
    let dir = tempfile::tempdir_in(base).unwrap();
    let start = Instant::now();
    for (hash, data) in blocks {
        let mut file = File::create(dir.path().join(hash.to_hex())).unwrap();
        file.write_all(data).unwrap();
        file.sync_all().unwrap();
    }
    start.elapsed()
}

/// Puts every block with at most `in_flight` puts running at once, as concurrent uploads
/// would. Returns the time and the bytes stored.
async fn put_all(base: &Path, blocks: &[(BlockHash, Bytes)], in_flight: usize) -> (Duration, u64) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(blocks.len());
    for (hash, data) in blocks.iter().cloned() {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = store.put(hash, data).await.unwrap();
            drop(permit);
            outcome.stored_bytes
        }));
    }
    let mut stored = 0;
    for task in tasks {
        stored += task.await.unwrap();
    }
    (start.elapsed(), stored)
}

async fn get_all(base: &Path, blocks: &[(BlockHash, Bytes)], in_flight: usize) -> Duration {
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = BlockStore::local(dir.path()).unwrap();
    for (hash, data) in blocks {
        store.put(*hash, data.clone()).await.unwrap();
    }
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(blocks.len());
    for (hash, _) in blocks.iter().cloned() {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let data = store.get(hash).await.unwrap();
            drop(permit);
            data.len()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

/// Many 4 KiB blocks (a tree of small files): one `put` each, one after another and 16
/// at a time, against `put_many` in batches of 1000 (what `POST /blocks/batch` does).
fn small_blocks(runtime: &tokio::runtime::Runtime, base: &Path) {
    let count: usize = env_or("CAIRN_BENCH_SMALL", 4000);
    let mut rng = StdRng::seed_from_u64(7);
    let blocks: Vec<(BlockHash, Bytes)> = (0..count)
        .map(|_| {
            let mut data = vec![0u8; 4096];
            rng.fill_bytes(&mut data);
            (BlockHash::of(&data), Bytes::from(data))
        })
        .collect();
    let per_sec = |what: &str, elapsed: Duration| {
        println!(
            "{what:<44} {:>7.0} blocks/s  ({:.2} s)",
            count as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
    };
    println!("\n{count} blocks of 4 KiB:");
    for in_flight in [1, 16] {
        let (elapsed, _) = runtime.block_on(put_all(base, &blocks, in_flight));
        per_sec(&format!("put 4 KiB, {in_flight} in flight"), elapsed);
    }
    let elapsed = runtime.block_on(async {
        let dir = tempfile::tempdir_in(base).unwrap();
        let store = BlockStore::local(dir.path()).unwrap();
        let start = Instant::now();
        for batch in blocks.chunks(1000) {
            store.put_many(batch.to_vec()).await.unwrap();
        }
        start.elapsed()
    });
    per_sec("put_many 4 KiB, batches of 1000", elapsed);
}
