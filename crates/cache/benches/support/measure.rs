//! Measuring helpers shared by the load programs (`examples/load.rs`,
//! `examples/cluster.rs`): a throughput loop of many tasks, and formatting.

/// Runs `$body` in `$tasks` concurrent loops for `$length`; evaluates to
/// operations per second. Each task gets its own clone of `$state` once, so
/// the loop itself shares nothing between tasks (no reference count bumped on
/// a shared line per operation). The stop signal comes from a plain thread,
/// and every loop yields now and then, so loops whose operation never waits
/// (in-process gets) still stop.
macro_rules! throughput {
    ($tasks:expr, $length:expr, $state:expr, |$s:pat_param, $i:ident| $body:expr) => {{
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let tasks: usize = $tasks;
        let stop = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(tokio::sync::Barrier::new(tasks + 1));
        let mut handles = Vec::with_capacity(tasks);
        for t in 0..tasks {
            let $s = $state.clone();
            let (stop, barrier) = (stop.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let mut n: u64 = 0;
                let mut $i: usize = t;
                while !stop.load(Ordering::Relaxed) {
                    $body;
                    n += 1;
                    $i = $i.wrapping_add(tasks);
                    if n.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
                n
            }));
        }
        barrier.wait().await;
        let begun = Instant::now();
        let stopper = {
            let (stop, length): (_, Duration) = (stop.clone(), $length);
            std::thread::spawn(move || {
                std::thread::sleep(length);
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut total = 0;
        for h in handles {
            total += h.await.expect("load task");
        }
        let elapsed = begun.elapsed();
        stopper.join().expect("stopper");
        total as f64 / elapsed.as_secs_f64()
    }};
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.1} k/s", r / 1e3)
    }
}

pub fn fmt_dur(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
