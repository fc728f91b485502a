//! Chunk + hash throughput on one file.
//!
//! ```text
//! head -c 1G /dev/urandom > /tmp/r1g && cat /tmp/r1g > /dev/null
//! cargo run --release -p cairn-core --example chunk_bench -- /tmp/r1g [--threads 1|2] [--read] [--runs N] [--compare]
//! ```
//!
//! Chunks and hashes FILE with the default chunk sizes and prints one JSON line. By
//! default it maps FILE into memory and uses `chunk_and_hash_parallel_slice` on both
//! cores (mode `mmap-segment-parallel`); `--read` reads it through `Read` with
//! `chunk_and_hash` instead (`pipelined-2-threads`), and `--threads 1` with
//! `chunk_and_hash_single_thread` (`single-thread`). The line:
//! `{"bytes":..,"seconds":..,"mb_per_s":..,"chunks":..,"mode":".."}` (MB = 10^6 bytes;
//! with `--runs N`, the fastest of N runs). By default it does nothing else, so that
//! `cargo xtask bench` can time the whole process against `b3sum --num-threads 1`.
//!
//! `--compare` first reads the file once (to warm the page cache), then adds to the line
//! the cut-point search alone over the file held in memory (`cut_only_mb_per_s`), the
//! `fastcdc` crate's v2020 search over the same bytes (`fastcdc_v2020_cut_mb_per_s`), and,
//! if `b3sum` is on the PATH, `b3sum --num-threads 1 FILE` run as many times
//! (`b3sum_1t_seconds`, `b3sum_1t_mb_per_s`, best run) with `ratio_to_b3sum_1t`, the
//! design target's figure (at least 0.6).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_core::chunk::{
    chunk_and_hash, chunk_and_hash_parallel_slice, chunk_and_hash_single_thread, find_cut,
    ChunkError, ChunkerConfig,
};

const USAGE: &str = "usage: chunk_bench FILE [--threads 1|2] [--read] [--runs N] [--compare]";

struct Args {
    file: PathBuf,
    threads: u32,
    read: bool,
    runs: u32,
    compare: bool,
}

impl Args {
    fn mode(&self) -> &'static str {
        match (self.threads, self.read) {
            (1, _) => "single-thread",
            (_, true) => "pipelined-2-threads",
            _ => "mmap-segment-parallel",
        }
    }
}

fn parse_args() -> Args {
    let mut file = None;
    let mut threads = 2;
    let mut runs = 1;
    let mut compare = false;
    let mut read = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).expect(USAGE),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect(USAGE),
            "--compare" => compare = true,
            "--read" => read = true,
            _ if file.is_none() && !arg.starts_with("--") => file = Some(PathBuf::from(arg)),
            _ => panic!("{USAGE}"),
        }
    }
    assert!(threads == 1 || threads == 2, "{USAGE}");
    assert!(runs >= 1, "{USAGE}");
    Args {
        file: file.expect(USAGE),
        threads,
        read,
        runs,
        compare,
    }
}

/// Runs `run` `runs` times and keeps the fastest: on a shared machine the slower runs
/// measure the neighbours.
fn best<T>(runs: u32, mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = run();
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(fastest, _)| took < *fastest) {
            best = Some((took, out));
        }
    }
    best.expect("at least one run")
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

/// Chunks and hashes the file once; returns the number of chunks.
fn chunk_file(args: &Args, config: &ChunkerConfig, bytes: u64) -> u64 {
    let file = File::open(&args.file).expect("opening FILE");
    let mut chunks = 0u64;
    if args.mode() == "mmap-segment-parallel" {
        // SAFETY: a benchmark over a file nobody else writes; if something truncated it
        // while mapped, reading the lost pages would kill the process with SIGBUS.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.expect("mapping FILE");
        let chunked = chunk_and_hash_parallel_slice(&map, config, |_| {
            chunks += 1;
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
        assert_eq!(chunked.size, bytes, "FILE changed while being read");
        return chunks;
    }
    let sink = |_chunk| -> Result<(), ()> {
        chunks += 1;
        Ok(())
    };
    let result = if args.threads == 2 {
        chunk_and_hash(file, config, sink)
    } else {
        chunk_and_hash_single_thread(file, config, sink)
    };
    match result {
        Ok(chunked) => assert_eq!(chunked.size, bytes, "FILE changed while being read"),
        Err(ChunkError::Read(err)) => panic!("reading FILE: {err}"),
        Err(ChunkError::Sink(())) => unreachable!("the sink never fails"),
    }
    chunks
}

/// The extra fields of `--compare`.
fn compare(args: &Args, config: &ChunkerConfig, bytes: u64, took: Duration) -> String {
    let mut data = Vec::new();
    File::open(&args.file)
        .and_then(|mut file| file.read_to_end(&mut data))
        .expect("reading FILE");
    let (cut_took, _) = best(args.runs, || {
        let mut rest = &data[..];
        while !rest.is_empty() {
            rest = &rest[find_cut(rest, config)..];
        }
    });
    let (fastcdc_took, _) = best(args.runs, || {
        let size = |n: usize| u32::try_from(n).expect("default sizes fit");
        fastcdc::v2020::FastCDC::new(
            &data,
            size(config.min_size),
            size(config.avg_size),
            size(config.max_size),
        )
        .count()
    });
    drop(data);
    let mut fields = format!(
        r#","cut_only_mb_per_s":{:.0},"fastcdc_v2020_cut_mb_per_s":{:.0}"#,
        mb_per_s(bytes, cut_took),
        mb_per_s(bytes, fastcdc_took),
    );
    let b3sum = best(args.runs, || {
        Command::new("b3sum")
            .args(["--num-threads", "1"])
            .arg(&args.file)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if let (b3sum_took, true) = b3sum {
        fields += &format!(
            r#","b3sum_1t_seconds":{:.4},"b3sum_1t_mb_per_s":{:.0},"ratio_to_b3sum_1t":{:.3}"#,
            b3sum_took.as_secs_f64(),
            mb_per_s(bytes, b3sum_took),
            b3sum_took.as_secs_f64() / took.as_secs_f64(),
        );
    }
    fields
}

fn main() {
    let args = parse_args();
    let config = ChunkerConfig::default();
    let bytes = std::fs::metadata(&args.file).expect("reading FILE").len();
    if args.compare {
        let mut file = File::open(&args.file).expect("opening FILE");
        std::io::copy(&mut file, &mut std::io::sink()).expect("reading FILE");
    }

    let (took, chunks) = best(args.runs, || chunk_file(&args, &config, bytes));
    let extra = if args.compare {
        compare(&args, &config, bytes, took)
    } else {
        String::new()
    };
    let mode = args.mode();
    println!(
        r#"{{"bytes":{bytes},"seconds":{:.4},"mb_per_s":{:.0},"chunks":{chunks},"mode":"{mode}"{extra}}}"#,
        took.as_secs_f64(),
        mb_per_s(bytes, took),
    );
}
